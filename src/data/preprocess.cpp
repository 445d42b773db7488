#include "aefx/data/preprocess.h"

#include <torch/torch.h>

#include "aefx/data/dataset.h"

namespace aefx::data {

torch::Tensor load_model_input(const std::string& file, const InputShape& shape) {
  const auto image = to_channels(decode_image(file, shape.size).unsqueeze(0), shape.channels);
  return to_float(image, torch::kCPU);
}

}  // namespace aefx::data
