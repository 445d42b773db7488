#pragma once
// Work shared out over threads, for loops whose items are not tensor operations (decoding image
// files). Depends on nothing but the standard library, so the fuzz targets link it too.
#include <cstdint>
#include <functional>

namespace aefx::util {

/// Calls fn(i) for every i in [0, n) on up to `max_threads` threads (no more than the cores),
/// each thread taking the next index as it finishes one, so that uneven items (image files of
/// different sizes) balance. The first exception stops the other threads before their next
/// index and is rethrown here. Not at::parallel_for: that is compiled into the caller, so it
/// runs serially unless aefx itself is built with OpenMP (-fopenmp, with the OpenMP runtime of
/// whichever LibTorch it links), and it hands each thread one fixed block.
void parallel_for_each(int64_t n, const std::function<void(int64_t)>& fn, unsigned max_threads = 8);

}  // namespace aefx::util
