#pragma once
// Checkpoints: a module's parameters and buffers plus a format version, what kind of model it
// is and its architecture line, written atomically. Loading checks all three, so a file from
// another model or another tool is named as such instead of failing deep inside LibTorch.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <filesystem>
#include <functional>
#include <string>

#include "aefx/dist/dist.h"
#include "aefx/engine/trainer.h"

namespace aefx::engine {

constexpr int64_t kCheckpointFormat = 1;

/// Identifies a checkpoint: `kind` (e.g. "autoencoder", "head") and architecture description.
struct CheckpointMeta {
  std::string kind;
  std::string architecture;
  int64_t epoch = 0;  ///< epochs completed when saved
};

/// Adds or reads a stage's own entries (e.g. its resume state) in a checkpoint.
using ArchiveWriter = std::function<void(torch::serialize::OutputArchive&)>;
using ArchiveReader = std::function<void(torch::serialize::InputArchive&)>;

/// Saves module (and optimizer state and `extra` entries when given) to `path` atomically: a
/// failed write (full disk, killed process) leaves the previous file as it was.
void save_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                     torch::nn::Module& module, torch::optim::Optimizer* optimizer = nullptr,
                     const ArchiveWriter& extra = nullptr);

/// Loads into `module` (and optimizer, and `extra` entries, when given). Throws
/// std::runtime_error naming the file when it is missing (and which stage writes it),
/// unreadable, of another kind, of another architecture or lacks an entry asked for. Returns
/// the stored metadata. Every rank of `group` calls it and gets rank 0's file (the other ranks
/// need no copy of the run folder).
CheckpointMeta load_checkpoint(const std::filesystem::path& path, const CheckpointMeta& expected,
                               torch::nn::Module& module, const std::string& written_by,
                               dist::Group& group, torch::optim::Optimizer* optimizer = nullptr,
                               const ArchiveReader& extra = nullptr);

/// Writes what resuming a Trainer needs (epoch, step, global step, the epoch's losses so far and
/// its seconds) and the state of the default CPU (and, when used, CUDA) random generators.
void write_resume_state(torch::serialize::OutputArchive& archive, const TrainState& state,
                        const torch::Device& device);

/// Reads what write_resume_state wrote, restores the random generators and returns the state to
/// pass to Trainer::run. Throws std::runtime_error when the archive holds no resume state.
TrainState read_resume_state(torch::serialize::InputArchive& archive, const torch::Device& device);

}  // namespace aefx::engine
