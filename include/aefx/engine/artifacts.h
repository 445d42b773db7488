#pragma once
// The trained models a run folder holds, loaded for the stages after the one that wrote them.
#include <torch/types.h>

#include "aefx/config/config.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/run_folder.h"
#include "aefx/models/autoencoder.h"

namespace aefx::engine {

/// Builds the configured autoencoder and loads the folder's checkpoints/autoencoder.pt into it,
/// on `device` (channels-last). Every rank of `group` gets rank 0's file. Throws
/// std::runtime_error naming the file (and the pretrain stage that writes it) when it is missing
/// or does not match the config.
models::Autoencoder load_autoencoder(const config::Config& cfg, const RunFolder& folder,
                                     const torch::Device& device, dist::Group& group);

/// Builds the configured head for `classes` classes and loads the folder's checkpoints/head.pt
/// into it, on `device`, in eval mode.
models::Head load_head(const config::Config& cfg, const RunFolder& folder, int64_t classes,
                       const torch::Device& device);

}  // namespace aefx::engine
