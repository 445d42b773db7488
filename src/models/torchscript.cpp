#include "aefx/models/torchscript.h"

#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "aefx/models/script_writer.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"

namespace aefx::models {
namespace {

/// TorchScript for normalise + encoder, as method `features`, returning every stage's map.
std::string encoder_source(ScriptWriter& w, Autoencoder& ae) {
  std::ostringstream out;
  out << "    def features(self, images: Tensor) -> List[Tensor]:\n"
      << "        x = (images - " << w.tensor("mean", ae->mean.view({1, -1, 1, 1})) << ") / "
      << w.tensor("std", ae->std.view({1, -1, 1, 1})) << "\n";
  if (ae->has_stem()) {
    const int64_t pad = ae->config().whiten_patch / 2;
    out << "        x = torch.conv2d(x, " << w.tensor("whiten", ae->whiten) << ", None, [1, 1], ["
        << pad << ", " << pad << "], [1, 1], 1)\n";
  }
  out << "        feats: List[Tensor] = []\n";
  ae->script_encoder(w, out);
  out << "        return feats\n";
  return out.str();
}

std::string codes_source(const CodeSpec& spec) {
  std::ostringstream out;
  out << "    def codes(self, images: Tensor) -> Tensor:\n"
      << "        feats = self.features(images)\n"
      << "        parts: List[Tensor] = []\n";
  for (size_t s = 0; s < spec.grids.size(); ++s) {
    const auto g = spec.grids[s];
    if (g == 0) continue;
    if (spec.uses_avg()) {
      out << "        parts.append(torch.flatten(torch.adaptive_avg_pool2d(feats[" << s << "], ["
          << g << ", " << g << "]), 1))\n";
    }
    if (spec.uses_max()) {
      out << "        parts.append(torch.flatten(torch.adaptive_max_pool2d(feats[" << s << "], ["
          << g << ", " << g << "])[0], 1))\n";
    }
  }
  out << "        return torch.cat(parts, 1)\n";
  return out.str();
}

std::string autoencoder_forward() {
  return "    def forward(self, images: Tensor) -> Tensor:\n"
         "        self.check(images)\n"
         "        feats = self.features(images)\n"
         "        return self.decode(feats[len(feats) - 1])\n";
}

}  // namespace

torch::jit::Module script_encoder(Autoencoder& ae, const CodeSpec& spec) {
  ScriptWriter w("aefx_encoder");
  const std::string src = encoder_source(w, ae) + codes_source(spec) + ae->script_check() +
                          "    def forward(self, images: Tensor) -> Tensor:\n"
                          "        self.check(images)\n"
                          "        return self.codes(images)\n";
  return w.finish(src);
}

torch::jit::Module script_autoencoder(Autoencoder& ae) {
  ScriptWriter w("aefx_autoencoder");
  std::ostringstream dec;
  dec << "    def decode(self, code: Tensor) -> Tensor:\n        x = code\n";
  const std::string output =
      ae->config().output_activation == config::OutputActivation::kSigmoid
          ? "        return torch.sigmoid(x)\n"
          : "        return torch.clamp(x * self.std + self.mean, 0.0, 1.0)\n";
  ae->script_decoder(w, dec);
  if (ae->has_stem()) {
    dec << "        x = torch.conv2d(x, " << w.tensor("unwhiten", ae->unwhiten)
        << ", None, [1, 1], [0, 0], [1, 1], 1)\n";
  }
  dec << output;
  return w.finish(encoder_source(w, ae) + dec.str() + ae->script_check() + autoencoder_forward());
}

torch::jit::Module script_classifier(Autoencoder& ae, Head& head, const CodeSpec& spec) {
  ScriptWriter w("aefx_classifier");
  std::ostringstream h;
  h << "    def head(self, code: Tensor) -> Tensor:\n"
    << "        x = (code - " << w.tensor("code_mean", head->code_mean) << ") / "
    << w.tensor("code_std", head->code_std) << "\n";
  int layer = 0;
  bool first = true;
  for (const auto& m : head->net->children()) {
    if (auto* lin = m->as<torch::nn::LinearImpl>()) {
      if (!first) h << "        x = torch.relu(x)\n";
      first = false;
      const std::string p = "head." + std::to_string(layer++);
      h << "        x = torch.addmm(" << w.tensor(p + ".bias", lin->bias) << ", x, "
        << w.tensor(p + ".weight", lin->weight) << ".t())\n";
    }
    // Dropout is the identity at inference; ReLU is emitted between linear layers above.
  }
  h << "        return x\n";
  const std::string src = encoder_source(w, ae) + codes_source(spec) + h.str() +
                          ae->script_check() +
                          "    def forward(self, images: Tensor) -> Tensor:\n"
                          "        self.check(images)\n"
                          "        return self.head(self.codes(images))\n";
  return w.finish(src);
}

void save_scripted(torch::jit::Module& module, const std::string& path,
                   const std::string& meta_json) {
  module.to(torch::kCPU);
  torch::jit::ExtraFilesMap extra{{kExportMetaName, meta_json}};
  // Serialised in memory, then written by aefx: LibTorch 1.13's file writer throws from a
  // destructor when a write fails (a full disk), which ends the process.
  std::ostringstream bytes;
  module.save(bytes, extra);
  util::atomic_write_text(path, bytes.str());
}

ExportedModel::ExportedModel(const std::string& path, const std::string& kind) : path_(path) {
  if (!std::filesystem::exists(path))
    throw std::runtime_error("model file " + path + " does not exist");
  if (std::filesystem::is_directory(path))
    throw std::runtime_error("model file " + path + " is a folder, not an exported .pt file");
  torch::jit::ExtraFilesMap extra{{kExportMetaName, ""}};
  try {
    module_ = torch::jit::load(path, torch::kCPU, extra);
  } catch (const c10::Error&) {
    throw std::runtime_error(
        "cannot load " + path +
        ": not a TorchScript model file (corrupt, truncated or another format?)");
  }
  meta_json_ = extra[kExportMetaName];
  if (meta_json_.empty()) {
    throw std::runtime_error(path + " is a TorchScript file but not an aefx export (no " +
                             std::string(kExportMetaName) + " inside)");
  }
  try {
    const auto meta = util::Json::parse(meta_json_);
    kind_ = meta.at("kind").get<std::string>();
    class_names_ = meta.at("class_names").get<std::vector<std::string>>();
    image_size_ = meta.at("input").at("height").get<int64_t>();
    channels_ = meta.at("input").at("channels").get<int64_t>();
  } catch (const util::Json::exception& e) {
    throw std::runtime_error(path + ": unreadable aefx metadata: " + e.what());
  }
  if (kind_ != kind) {
    throw std::runtime_error(path + " is an aefx " + kind_ + " export; this needs " + kind + ".pt");
  }
  module_.eval();
}

torch::Tensor ExportedModel::forward(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return module_.forward({images}).toTensor();
}

void ExportedModel::to(const torch::Device& device) {
  TORCH_CHECK(!frozen_, "ExportedModel::to after freeze");
  module_.to(device);
  device_ = device;
}

void ExportedModel::freeze() {
  if (frozen_) return;
  module_ = torch::jit::freeze(module_);
  frozen_ = true;
}

}  // namespace aefx::models
