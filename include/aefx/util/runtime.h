#pragma once
// Process-wide runtime settings: thread count, allocator tuning, device choice.
#include <torch/types.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace aefx::util {

/// Sets LibTorch's intra-op threads; 0 means every core. Debian's LibTorch starts with one
/// thread, which halves CPU throughput on two cores. Returns the count now in force.
int configure_threads(int64_t threads);

/// Keeps large freed blocks in glibc's heap instead of returning them to the kernel, so that
/// activations reuse warm pages instead of page-faulting fresh mmap'd memory every step
/// (3.5x faster CPU training measured on a 2-core machine). Call once, early in main.
void tune_allocator();

/// Hands the heap's free memory back to the kernel (malloc_trim). The allocator settings above
/// keep up to 1 GiB of freed blocks for reuse within a stage; between stages that memory is
/// better returned, since the next stage's working set differs. Called after every stage.
void release_free_memory();

/// What aefx runs with, as (name, value) lines for `aefx info` and every run's log.txt: the aefx
/// version and git commit, LibTorch, CUDA (available? GPUs), cuDNN (version), OpenCV (version
/// or "built without"), the BLAS library loaded, LibTorch's BLAS, intra-op and inter-op
/// threads, and the machine.
std::vector<std::pair<std::string, std::string>> environment_info();

/// Peak resident set size of this process so far, in bytes.
int64_t peak_rss_bytes();

/// Resolves `auto|cpu|cuda|cuda:N`; throws std::invalid_argument when CUDA is asked for and
/// this build or machine has none.
torch::Device resolve_device(const std::string& spec);

/// Seconds since an arbitrary fixed point, for wall-time measurements.
double now_seconds();

/// Thrown at a safe point (after a training step, between batches, between stages) once SIGINT
/// or SIGTERM has arrived. The CLI exits with 128 + signal(): 130 for SIGINT, 143 for SIGTERM.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int signal, const std::string& what) : std::runtime_error(what), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

/// Installs handlers for SIGINT and SIGTERM that only record the signal, so that work stops at
/// the next safe point with its state saved; a second SIGINT or SIGTERM ends the process at
/// once (the last saved state stays: every file is written atomically). Also ignores SIGXFSZ,
/// so that a write over the file-size limit fails with an error aefx reports instead of killing
/// the process.
void install_signal_handlers();

/// The signal that asked aefx to stop (SIGINT or SIGTERM), or 0.
int interrupt_signal();

/// Records `signal` as if it had arrived (tests), or clears it with 0.
void set_interrupt_signal(int signal);

/// "SIGINT", "SIGTERM" or "signal N".
std::string signal_name(int signal);

/// Throws Interrupted ("interrupted by SIGINT <where>") when a signal has arrived.
void throw_if_interrupted(const std::string& where);

}  // namespace aefx::util
