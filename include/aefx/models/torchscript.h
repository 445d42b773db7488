#pragma once
// TorchScript versions of the trained models, for use without aefx (C++ or Python).
//
// Why generated source: LibTorch's C++ frontend has no tracer or scripter for torch::nn
// modules, and keeping the models as TorchScript from the start would give up the C++
// modules' speed and clarity in training. The architecture is small and regular, so aefx
// writes its TorchScript source from the trained module's structure and defines it on a
// torch::jit::Module whose parameters and buffers are copies of the trained tensors.
// The generated code uses only aten operators, so the files load in torch 1.13 and 2.x.
#include <torch/script.h>

#include <string>
#include <vector>

#include "aefx/models/autoencoder.h"

namespace aefx::models {

/// images (float N x C x H x W in [0, 1]; C = 3: RGB, 1: grey) -> latent codes (N x D), as the
/// head saw them.
torch::jit::Module script_encoder(Autoencoder& ae, const CodeSpec& spec);

/// images -> reconstructions, in [0, 1].
torch::jit::Module script_autoencoder(Autoencoder& ae);

/// images -> logits: normalisation, encoder, pooling, code standardisation and head in one.
torch::jit::Module script_classifier(Autoencoder& ae, Head& head, const CodeSpec& spec);

/// Name of the metadata file stored inside every exported .pt (same content as model.json).
inline constexpr const char* kExportMetaName = "aefx.json";

/// Saves a scripted module with `meta_json` embedded, atomically.
void save_scripted(torch::jit::Module& module, const std::string& path,
                   const std::string& meta_json);

/// An exported model loaded from its .pt alone (no config, no run folder), with the metadata
/// aefx embedded in it.
class ExportedModel {
 public:
  /// Loads `path` onto the CPU. Throws std::runtime_error naming the file when it is missing, not
  /// TorchScript, not an aefx export, or an export of another kind than `kind` ("encoder",
  /// "autoencoder", "classifier").
  ExportedModel(const std::string& path, const std::string& kind);
  /// The model's output for float images N x C x H x W in [0, 1] on its device, without
  /// gradients.
  torch::Tensor forward(const torch::Tensor& images);
  /// Moves the module to `device`.
  void to(const torch::Device& device);
  /// Freezes the module for inference (torch::jit::freeze, as torch.jit.freeze: attributes
  /// become constants, BatchNorm is folded into the convolutions): 1.6x faster on a CPU, the
  /// outputs equal within float rounding. Call after to(); idempotent.
  void freeze();
  const torch::Device& device() const { return device_; }
  /// The embedded aefx.json (as model.json) as text.
  const std::string& meta_json() const { return meta_json_; }
  const std::vector<std::string>& class_names() const { return class_names_; }
  int64_t image_size() const { return image_size_; }
  int64_t channels() const { return channels_; }
  const std::string& kind() const { return kind_; }
  const std::string& path() const { return path_; }

 private:
  torch::jit::Module module_;
  torch::Device device_ = torch::kCPU;
  bool frozen_ = false;
  std::string path_, meta_json_;
  std::vector<std::string> class_names_;
  int64_t image_size_ = 32;
  int64_t channels_ = 3;
  std::string kind_;
};

/// An exported classifier.pt: images -> logits.
class ExportedClassifier : public ExportedModel {
 public:
  explicit ExportedClassifier(const std::string& path) : ExportedModel(path, "classifier") {}
  /// Logits for float images N x C x H x W in [0, 1].
  torch::Tensor logits(const torch::Tensor& images) { return forward(images); }
};

}  // namespace aefx::models
