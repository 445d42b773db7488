#include "aefx/util/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace aefx::util {

void parallel_for_each(int64_t n, const std::function<void(int64_t)>& fn, unsigned max_threads) {
  const auto threads = static_cast<int64_t>(
      std::max(1u, std::min(max_threads, std::thread::hardware_concurrency())));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mu;
  auto worker = [&] {
    for (int64_t i = next++; i < n && !failed; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < std::min(threads, n); ++t) pool.emplace_back(worker);
  worker();  // the calling thread works too
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace aefx::util
