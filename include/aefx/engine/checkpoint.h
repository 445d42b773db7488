#pragma once
// Checkpoints: a module's parameters and buffers plus a format version, what kind of model it
// is and its architecture line, written atomically. Loading checks all three, so a file from
// another model or another tool is named as such instead of failing deep inside LibTorch.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <string>

namespace aefx::engine {

constexpr int64_t kCheckpointFormat = 1;

/// Identifies a checkpoint: `kind` (e.g. "autoencoder", "head") and architecture description.
struct CheckpointMeta {
  std::string kind;
  std::string architecture;
  int64_t epoch = 0;  ///< epochs completed when saved
};

/// Saves module (and optimizer state when given) to `path` atomically.
void save_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                     torch::nn::Module& module, torch::optim::Optimizer* optimizer = nullptr);

/// Loads into `module` (and optimizer when given). Throws std::runtime_error naming the file
/// when it is missing (and which stage writes it), unreadable, of another kind, or of another
/// architecture. Returns the stored metadata.
CheckpointMeta load_checkpoint(const std::filesystem::path& path, const CheckpointMeta& expected,
                               torch::nn::Module& module, const std::string& written_by,
                               torch::optim::Optimizer* optimizer = nullptr);

}  // namespace aefx::engine
