#pragma once
// Writes TorchScript source for a trained model (see torchscript.h for why generated source).
#include <torch/script.h>

#include <string>

namespace aefx::models {

/// Collects tensors as attributes of a torch::jit::Module and defines generated TorchScript
/// source on it. The architectures emit their layers through this (AutoencoderImpl::script_*).
class ScriptWriter {
 public:
  explicit ScriptWriter(const std::string& name);

  /// Registers a contiguous copy of `t` (on its device) and returns "self.<name>" ('.' in
  /// the name becomes '_').
  std::string tensor(const std::string& name, const torch::Tensor& t);

  /// Defines `source` (the methods) on the module and returns it in eval mode.
  torch::jit::Module finish(const std::string& source);

 private:
  torch::jit::Module module_;
};

}  // namespace aefx::models
