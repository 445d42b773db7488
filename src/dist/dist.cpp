#include "aefx/dist/dist.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#if AEFX_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if AEFX_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "aefx/util/fs.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::dist {
namespace {

// LibTorch 2.x split the collectives (Backend) from the group that routes them by device
// (ProcessGroup); in 1.13 ProcessGroupGloo/NCCL are ProcessGroups. The calls used are the same.
#if TORCH_VERSION_MAJOR >= 2
using BackendType = c10d::Backend;
#else
using BackendType = c10d::ProcessGroup;
#endif

int parse_int(const std::map<std::string, std::string>& vars, const std::string& name, int lo,
              int hi, int fallback) {
  const auto it = vars.find(name);
  if (it == vars.end() || it->second.empty()) return fallback;
  const std::string& v = it->second;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0' || errno != 0 || x < lo || x > hi) {
    throw std::invalid_argument("environment variable " + name + "='" + v +
                                "' is not an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  return static_cast<int>(x);
}

constexpr const char* kErrorMarker =
    "\x01"
    "aefx-error"
    "\x01";

}  // namespace

std::map<std::string, std::string> environment_variables() {
  std::map<std::string, std::string> vars;
  for (const char* name :
       {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"}) {
    if (const char* v = std::getenv(name)) vars[name] = v;
  }
  return vars;
}

Env env_from(const std::map<std::string, std::string>& vars) {
  Env env;
  const bool has_rank = vars.count("RANK") > 0, has_world = vars.count("WORLD_SIZE") > 0;
  if (!has_rank && !has_world) return env;
  if (!has_rank || !has_world) {
    throw std::invalid_argument(std::string("environment variable ") +
                                (has_rank ? "WORLD_SIZE" : "RANK") + " is not set, but " +
                                (has_rank ? "RANK" : "WORLD_SIZE") +
                                " is: set both (and MASTER_ADDR, MASTER_PORT) to join a group, "
                                "or neither to run alone");
  }
  env.enabled = true;
  env.world_size = parse_int(vars, "WORLD_SIZE", 1, 1 << 20, 1);
  env.rank = parse_int(vars, "RANK", 0, env.world_size - 1, 0);
  env.local_world_size = parse_int(vars, "LOCAL_WORLD_SIZE", 1, env.world_size, 1);
  // Without LOCAL_WORLD_SIZE, LOCAL_RANK is only bounded by the world size.
  env.local_rank =
      parse_int(vars, "LOCAL_RANK", 0,
                (vars.count("LOCAL_WORLD_SIZE") ? env.local_world_size : env.world_size) - 1, 0);
  const auto agent = vars.find("TORCHELASTIC_USE_AGENT_STORE");
  env.agent_store = agent != vars.end() && (agent->second == "True" || agent->second == "1");
  env.restart_count = parse_int(vars, "TORCHELASTIC_RESTART_COUNT", 0, 1 << 30, 0);
  env.master_port = parse_int(vars, "MASTER_PORT", 1, 65535, 29500);
  const auto addr = vars.find("MASTER_ADDR");
  if (addr != vars.end()) {
    if (addr->second.empty())
      throw std::invalid_argument("environment variable MASTER_ADDR is empty");
    env.master_addr = addr->second;
  }
  return env;
}

bool has_gloo() { return AEFX_HAVE_GLOO != 0; }
bool has_nccl() { return AEFX_HAVE_NCCL != 0; }

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<BackendType> pg;
};

Group::Group() : timeout_(0) {}

Group::Group(const Env& env, config::Backend backend, const torch::Device& device,
             std::chrono::milliseconds timeout)
    : env_(env), device_(device), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  using config::Backend;
  backend_ =
      backend == Backend::kAuto ? (device.is_cuda() ? Backend::kNccl : Backend::kGloo) : backend;
  if (backend_ == config::Backend::kNccl && !device.is_cuda())
    throw std::invalid_argument("distributed.backend: nccl needs a CUDA device (device: " +
                                device.str() + "); use gloo or auto on the CPU");
  if (backend_ == config::Backend::kNccl && !has_nccl())
    throw std::invalid_argument(
        "distributed.backend: this aefx was built without NCCL (it needs a CUDA LibTorch with "
        "NCCL headers); use gloo");
  if (backend_ == config::Backend::kGloo && !has_gloo())
    throw std::invalid_argument(
        "distributed.backend: this aefx was built without Gloo (Debian: libgloo-dev); use "
        "nccl on CUDA");
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(env.master_port);
    opts.isServer = env.rank == 0 && !env.agent_store;
    opts.numWorkers = static_cast<size_t>(env.world_size);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
    // Under torchrun the agent's store holds every restart's keys: ours go under this one's.
    if (env.agent_store)
      impl_->store = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + std::to_string(env.restart_count), impl_->store);
  } catch (const std::exception& e) {
    throw PeerFailure(util::strfmt(
        "rank %d of %d: cannot form the group through the store at %s within "
        "distributed.timeout = %.0f s (%s): %s",
        env.rank, env.world_size, where.c_str(), timeout.count() / 1000.0,
        env.rank == 0 ? "rank 0 serves it and waits for every rank"
                      : "rank 0 serves it; is it running, and is the address reachable?",
        e.what()));
  }
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("aefx-pg", impl_->store);
  try {
#if AEFX_HAVE_GLOO
    if (backend_ == config::Backend::kGloo) {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME picks the network interface, as in PyTorch; on one machine the
      // loopback address; else the address this machine's hostname resolves to.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl_->pg =
          c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, env.rank, env.world_size, opts);
    }
#endif
#if AEFX_HAVE_NCCL
    if (backend_ == config::Backend::kNccl) {
      // Blocking waits: Work::wait then fails after the timeout instead of leaving a dead
      // peer's collective queued on the GPU stream (unless the user chose otherwise).
#if TORCH_VERSION_MAJOR >= 2
      setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
#else
      setenv("NCCL_BLOCKING_WAIT", "1", 0);
#endif
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      impl_->pg =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(pg_store, env.rank, env.world_size, opts);
    }
#endif
  } catch (const std::exception& e) {
    fail(std::string("joining the ") + config::name_of(backend_) + " group", e);
  }
  // Every rank has joined once one collective went through.
  barrier("forming the group");
}

Group::~Group() {
#if AEFX_HAVE_NCCL && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
  // NCCL 2.x wants its communicators shut down before exit (else it warns of leaks); after a
  // failure they may hang, so they are then left to the process's end.
  if (backend_ == config::Backend::kNccl && impl_ && impl_->pg && !failed_) {
    try {
      static_cast<c10d::ProcessGroupNCCL*>(impl_->pg.get())->shutdown();
    } catch (const std::exception&) {
      // Nothing left to do at exit.
    }
  }
#endif
  if (!impl_) return;
  // The collectives go first: their threads use the store.
  impl_->pg.reset();
  impl_->store.reset();
}

void Group::fail(const std::string& op, const std::exception& e) const {
  failed_ = true;
  // The launcher passes a signal to every rank; the one that stops first closes its
  // connections, which the others see here.
  if (const int sig = util::interrupt_signal()) {
    throw util::Interrupted(
        sig, util::strfmt("interrupted by %s on rank %d of %d during %s",
                          util::signal_name(sig).c_str(), env_.rank, env_.world_size, op.c_str()));
  }
  std::string cause = e.what();
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) cause = c10->what_without_backtrace();
  const auto nl = cause.find('\n');
  if (nl != std::string::npos) cause = cause.substr(0, nl);
  throw PeerFailure(util::strfmt(
      "rank %d of %d: %s failed (%s backend): %s. Another rank stopped (see its output) or did "
      "not answer within distributed.timeout = %.0f s",
      env_.rank, env_.world_size, op.c_str(), config::name_of(backend_), cause.c_str(),
      timeout_.count() / 1000.0));
}

namespace {

/// Runs `fn` on flat buffers holding `tensors` (grouped by dtype, at most `bucket_bytes` each),
/// then copies the buffers back when `write_back`.
void bucketed(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes, bool write_back,
              const std::function<void(torch::Tensor&)>& fn) {
  size_t i = 0;
  while (i < tensors.size()) {
    size_t j = i;
    int64_t bytes = 0;
    while (j < tensors.size() && tensors[j].scalar_type() == tensors[i].scalar_type() &&
           (j == i || bytes + tensors[j].nbytes() <= static_cast<size_t>(bucket_bytes))) {
      bytes += static_cast<int64_t>(tensors[j].nbytes());
      ++j;
    }
    std::vector<torch::Tensor> flat;
    for (size_t k = i; k < j; ++k) flat.push_back(tensors[k].reshape(-1));
    auto buffer = torch::cat(flat);
    fn(buffer);
    if (write_back) {
      int64_t off = 0;
      torch::NoGradGuard no_grad;
      for (size_t k = i; k < j; ++k) {
        auto& t = const_cast<torch::Tensor&>(tensors[k]);
        t.copy_(buffer.narrow(0, off, t.numel()).view(t.sizes()));
        off += t.numel();
      }
    }
    i = j;
  }
}

}  // namespace

void Group::all_reduce(const std::vector<torch::Tensor>& tensors, bool average,
                       int64_t bucket_bytes) {
  if (!impl_) return;
  torch::NoGradGuard no_grad;
  bucketed(tensors, bucket_bytes, true, [&](torch::Tensor& buffer) {
    try {
      std::vector<at::Tensor> v{buffer};
      impl_->pg->allreduce(v)->wait(timeout_);
    } catch (const std::exception& e) {
      fail("all-reduce", e);
    }
    if (average) buffer.div_(env_.world_size);
  });
}

void Group::average_gradients(const std::vector<torch::Tensor>& params) {
  if (!impl_) return;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  all_reduce(grads, true);
}

void Group::broadcast(const std::vector<torch::Tensor>& tensors) {
  if (!impl_) return;
  torch::NoGradGuard no_grad;
  bucketed(tensors, 25 << 20, !is_main(), [&](torch::Tensor& buffer) {
    try {
      std::vector<at::Tensor> v{buffer};
      impl_->pg->broadcast(v)->wait(timeout_);
    } catch (const std::exception& e) {
      fail("broadcast", e);
    }
  });
}

void Group::gather_shards(const torch::Tensor& local, torch::Tensor full) {
  if (!impl_) {
    torch::NoGradGuard no_grad;
    if (!local.is_same(full)) full.copy_(local);
    return;
  }
  torch::NoGradGuard no_grad;
  const int64_t n = full.size(0);
  for (int r = 0; r < env_.world_size; ++r) {
    const auto [begin, end] = shard(n, r, env_.world_size);
    if (end == begin) continue;
    auto rows = full.narrow(0, begin, end - begin);
    if (r == env_.rank) {
      TORCH_CHECK(local.size(0) == end - begin, "gather_shards: rank ", r, " holds ", local.size(0),
                  " rows, expected ", end - begin);
      rows.copy_(local);
    }
    // Each rank's rows straight into the full tensor (a contiguous slice): no second copy. bf16
    // travels as its bytes (LibTorch 1.13's Gloo broadcasts no bf16).
    try {
      std::vector<at::Tensor> v{rows.scalar_type() == torch::kBFloat16 ? rows.view(torch::kByte)
                                                                       : rows};
      c10d::BroadcastOptions opts;
      opts.rootRank = r;
      impl_->pg->broadcast(v, opts)->wait(timeout_);
    } catch (const std::exception& e) {
      fail(util::strfmt("gathering rank %d's rows", r), e);
    }
  }
}

double Group::sum(double value) {
  if (!impl_) return value;
  auto t = torch::full({1}, value, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  try {
    std::vector<at::Tensor> v{t};
    impl_->pg->allreduce(v)->wait(timeout_);
  } catch (const std::exception& e) {
    fail("all-reduce", e);
  }
  return t.item<double>();
}

std::pair<int, bool> Group::agree(int signal, bool non_finite) {
  if (!impl_) return {signal, non_finite};
  auto t = torch::tensor({static_cast<double>(signal), non_finite ? 1.0 : 0.0},
                         torch::TensorOptions().dtype(torch::kDouble))
               .to(device_);
  try {
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MAX;
    impl_->pg->allreduce(v, opts)->wait(timeout_);
  } catch (const std::exception& e) {
    fail("agreeing on stopping", e);
  }
  auto cpu = t.cpu();
  return {static_cast<int>(cpu[0].item<double>()), cpu[1].item<double>() > 0};
}

std::string Group::from_main(const std::string& value) {
  if (!impl_) return value;
  const std::string key = "aefx/" + std::to_string(seq_++);
  try {
    if (is_main()) {
      impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
      return value;
    }
    const auto bytes = impl_->store->get(key);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    fail("receiving rank 0's data", e);
  }
}

std::string Group::file_from_main(const std::string& file, const std::string& written_by) {
  if (!impl_) {
    if (!written_by.empty()) util::require_file(file, written_by);
    return util::read_text(file);
  }
  std::string bytes;
  if (is_main()) {
    try {
      if (!written_by.empty()) util::require_file(file, written_by);
      bytes = util::read_text(file);
    } catch (const std::exception& e) {
      from_main(kErrorMarker + std::string(e.what()));
      throw;
    }
  }
  bytes = from_main(bytes);
  if (!is_main() && bytes.rfind(kErrorMarker, 0) == 0) {
    throw std::runtime_error(util::strfmt("rank %d: rank 0 could not read %s: %s", env_.rank,
                                          file.c_str(),
                                          bytes.substr(std::string(kErrorMarker).size()).c_str()));
  }
  return bytes;
}

void Group::check_same(double value, const std::string& what) {
  if (!impl_) return;
  auto mine = torch::full({1}, value, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < env_.world_size; ++r) out[0].push_back(torch::empty_like(mine));
  try {
    std::vector<at::Tensor> in{mine};
    impl_->pg->allgather(out, in)->wait(timeout_);
  } catch (const std::exception& e) {
    fail("comparing " + what, e);
  }
  std::string values;
  bool same = true;
  for (int r = 0; r < env_.world_size; ++r) {
    const double v = out[0][static_cast<size_t>(r)].item<double>();
    same = same && v == value;
    values += util::strfmt("%srank %d: %.17g", r ? ", " : "", r, v);
  }
  if (!same)
    throw std::runtime_error("the ranks disagree on " + what + " (" + values +
                             "); data-parallel training keeps them identical, so this is a bug "
                             "or a hardware fault");
}

void Group::check_same(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (!impl_) return;
  check_same(fingerprint(tensors), what);
}

void Group::barrier(const std::string& what) {
  if (!impl_) return;
  try {
    sum(0.0);
  } catch (const PeerFailure& e) {
    throw PeerFailure(std::string(e.what()) + " (while " + what + ")");
  }
}

std::pair<int64_t, int64_t> shard(int64_t n, int rank, int world) {
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

uint64_t rank_seed(int64_t seed, int rank) {
  return static_cast<uint64_t>(seed) + static_cast<uint64_t>(rank) * 1000003ULL;
}

double fingerprint(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  double f = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto t = tensors[i].to(torch::kCPU, torch::kDouble);
    f += t.sum().item<double>() + 1e-3 * static_cast<double>(i + 1) * t.abs().sum().item<double>();
  }
  return f;
}

}  // namespace aefx::dist
