#pragma once
// Image files as a model's input: what `aefx predict` feeds an exported classifier.
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace aefx::data {

/// The images a model takes: square, `size` x `size`, with `channels` channels (3 RGB, 1 grey).
struct InputShape {
  int64_t channels = 3;
  int64_t size = 32;
};

/// Decodes one image file (any size, colour, grey or with alpha) into a model's input: float
/// 1 x channels x size x size in [0, 1], resized, a colour image converted to grey for a grey
/// model and a grey one to RGB for a colour model (as to_channels), then as to_float. Throws
/// std::runtime_error naming the file when it is missing or undecodable.
torch::Tensor load_model_input(const std::string& file, const InputShape& shape);

}  // namespace aefx::data
