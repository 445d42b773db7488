#pragma once
// Optimizers and the memory layout of what they update.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "aefx/config/config.h"

namespace aefx::engine {

/// Builds the optimizer the config chose (adamw, adam, or sgd with Nesterov momentum 0.9).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(config::Optimizer name,
                                                        std::vector<torch::Tensor> params,
                                                        double lr, double weight_decay);

/// Puts every 4-D parameter of `module` in channels-last layout (oneDNN's fast convolutions on
/// the CPU, tensor cores on the GPU).
void to_channels_last(torch::nn::Module& module);

/// After loading optimizer state from a checkpoint (read onto the CPU, contiguous): moves it to
/// `device` and gives 4-D tensors the channels-last layout their parameters have, as the state
/// of an uninterrupted run has, so that a resumed run computes bit-identical updates.
void match_optimizer_state(torch::optim::Optimizer& opt, const torch::Device& device);

}  // namespace aefx::engine
