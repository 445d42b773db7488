#include "aefx/models/torchscript.h"

#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "aefx/util/fs.h"
#include "aefx/util/json.h"

namespace aefx::models {
namespace {

/// Collects tensors as module attributes and writes TorchScript expressions that use them.
class ScriptWriter {
 public:
  explicit ScriptWriter(const std::string& name) : module_(name) {}

  /// Registers a contiguous copy of `t` (on its device) and returns "self.<name>".
  std::string tensor(const std::string& name, const torch::Tensor& t) {
    std::string attr = name;
    for (auto& c : attr) {
      if (c == '.') c = '_';
    }
    module_.register_buffer(attr, t.detach().contiguous().clone());
    return "self." + attr;
  }

  /// Emits conv (no bias) -> batch norm -> relu for one block of a Sequential.
  std::string conv_bn_relu(const std::string& prefix, torch::nn::Conv2dImpl& conv,
                           torch::nn::BatchNorm2dImpl& bn, const std::string& x) {
    const auto s = conv.options.stride()->at(0);
    std::ostringstream e;
    e << "torch.relu(torch.batch_norm(torch.conv2d(" << x << ", "
      << tensor(prefix + ".conv.weight", conv.weight) << ", None, [" << s << ", " << s
      << "], [1, 1], [1, 1], 1), " << tensor(prefix + ".bn.weight", bn.weight) << ", "
      << tensor(prefix + ".bn.bias", bn.bias) << ", "
      << tensor(prefix + ".bn.mean", bn.running_mean) << ", "
      << tensor(prefix + ".bn.var", bn.running_var) << ", False, 0.0, " << bn.options.eps()
      << ", False))";
    return e.str();
  }

  /// Emits every block of a Sequential of [Upsample,] (Conv2d, BatchNorm2d, ReLU)* modules.
  void sequential(const std::string& prefix, torch::nn::Sequential& seq, std::ostringstream& out) {
    size_t i = 0;
    const size_t n = seq->size();
    int block = 0;
    while (i < n) {
      if (auto* up = seq[i]->as<torch::nn::UpsampleImpl>()) {
        (void)up;
        out << "        x = torch.upsample_nearest2d(x, None, [2.0, 2.0])\n";
        ++i;
        continue;
      }
      auto* conv = seq[i]->as<torch::nn::Conv2dImpl>();
      auto* bn = i + 1 < n ? seq[i + 1]->as<torch::nn::BatchNorm2dImpl>() : nullptr;
      TORCH_CHECK(conv && bn, "script export: unexpected layer ", seq[i]->name(), " in ", prefix);
      out << "        x = " << conv_bn_relu(prefix + "." + std::to_string(block++), *conv, *bn, "x")
          << "\n";
      i += 3;  // conv, bn, relu
    }
  }

  /// Emits the flattened x through the "dense" Sequential (Linear and activation modules) of a
  /// dense autoencoder's encoder or decoder.
  void dense(const std::string& prefix, torch::nn::Module& parent, std::ostringstream& out) {
    auto seq =
        std::dynamic_pointer_cast<torch::nn::SequentialImpl>(parent.named_children()["dense"]);
    TORCH_CHECK(seq, "script export: ", prefix, " is not a Sequential");
    out << "        x = torch.flatten(x, 1)\n";
    int layer = 0;
    for (const auto& m : seq->children()) {
      if (auto* lin = m->as<torch::nn::LinearImpl>()) {
        const std::string p = prefix + "." + std::to_string(layer++);
        out << "        x = torch.addmm(" << tensor(p + ".bias", lin->bias) << ", x, "
            << tensor(p + ".weight", lin->weight) << ".t())\n";
      } else if (m->as<torch::nn::ReLUImpl>()) {
        out << "        x = torch.relu(x)\n";
      } else if (m->as<torch::nn::TanhImpl>()) {
        out << "        x = torch.tanh(x)\n";
      } else if (m->as<torch::nn::SigmoidImpl>()) {
        out << "        x = torch.sigmoid(x)\n";
      } else {
        TORCH_CHECK(false, "script export: unexpected layer ", m->name(), " in ", prefix);
      }
    }
  }

  torch::jit::Module finish(const std::string& source) {
    module_.define(source);
    module_.eval();
    return module_;
  }

 private:
  torch::jit::Module module_;
};

/// TorchScript for normalise + encoder, as method `features`, returning every stage's map.
std::string encoder_source(ScriptWriter& w, Autoencoder& ae) {
  std::ostringstream out;
  out << "    def features(self, images: Tensor) -> List[Tensor]:\n"
      << "        x = (images - " << w.tensor("mean", ae->mean.view({1, -1, 1, 1})) << ") / "
      << w.tensor("std", ae->std.view({1, -1, 1, 1})) << "\n"
      << "        feats: List[Tensor] = []\n";
  if (ae->config().type == config::ModelType::kDense) {
    // One "stage": the code as N x code_size x 1 x 1, as the native encoder returns it.
    w.dense("enc.dense", *ae->encoder, out);
    out << "        feats.append(torch.reshape(x, [x.size(0), x.size(1), 1, 1]))\n"
        << "        return feats\n";
    return out.str();
  }
  for (const auto& child : ae->encoder->named_children()) {
    auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(child.value());
    TORCH_CHECK(seq, "script export: unexpected encoder child ", child.key());
    torch::nn::Sequential s(seq);
    w.sequential("enc." + child.key(), s, out);
    out << "        feats.append(x)\n";
  }
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

std::string check_source(Autoencoder& ae) {
  // A plain assert: the default resolver of define() knows no exception classes. A dense model
  // also needs the image size it was trained on.
  if (ae->config().type == config::ModelType::kDense) {
    const auto n = std::to_string(ae->image_size());
    return "    def check(self, images: Tensor):\n"
           "        assert images.dim() == 4 and images.size(1) == self.mean.size(1) and "
           "images.size(2) == " +
           n + " and images.size(3) == " + n + ", 'expected float images N x C x " + n + " x " + n +
           " in [0, 1], C as in model.json'\n";
  }
  return "    def check(self, images: Tensor):\n"
         "        assert images.dim() == 4 and images.size(1) == self.mean.size(1), "
         "'expected float images N x C x H x W in [0, 1], C as in model.json'\n";
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
  const std::string src = encoder_source(w, ae) + codes_source(spec) + check_source(ae) +
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
  std::shared_ptr<torch::nn::Conv2dImpl> out_conv;
  if (ae->config().type == config::ModelType::kDense) {
    w.dense("dec.dense", *ae->decoder, dec);
    const auto n = std::to_string(ae->image_size());
    dec << "        x = torch.reshape(x, [x.size(0), " << ae->channels() << ", " << n << ", " << n
        << "])\n"
        << output;
    return w.finish(encoder_source(w, ae) + dec.str() + check_source(ae) + autoencoder_forward());
  }
  for (const auto& child : ae->decoder->named_children()) {
    if (auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(child.value())) {
      torch::nn::Sequential s(seq);
      w.sequential("dec." + child.key(), s, dec);
    } else {
      out_conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(child.value());
    }
  }
  TORCH_CHECK(out_conv, "script export: decoder has no output convolution");
  dec << "        x = torch.conv2d(x, " << w.tensor("dec.out.weight", out_conv->weight) << ", "
      << w.tensor("dec.out.bias", out_conv->bias) << ", [1, 1], [1, 1], [1, 1], 1)\n"
      << output;
  return w.finish(encoder_source(w, ae) + dec.str() + check_source(ae) + autoencoder_forward());
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
  const std::string src = encoder_source(w, ae) + codes_source(spec) + h.str() + check_source(ae) +
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

ExportedClassifier::ExportedClassifier(const std::string& path) {
  if (!std::filesystem::exists(path))
    throw std::runtime_error("model file " + path + " does not exist");
  torch::jit::ExtraFilesMap extra{{kExportMetaName, ""}};
  try {
    module_ = torch::jit::load(path, torch::kCPU, extra);
  } catch (const c10::Error&) {
    throw std::runtime_error(
        "cannot load " + path +
        ": not a TorchScript model file (corrupt, truncated or another format?)");
  }
  if (extra[kExportMetaName].empty()) {
    throw std::runtime_error(path + " is a TorchScript file but not an aefx export (no " +
                             std::string(kExportMetaName) + " inside)");
  }
  try {
    const auto meta = util::Json::parse(extra[kExportMetaName]);
    kind_ = meta.at("kind").get<std::string>();
    class_names_ = meta.at("class_names").get<std::vector<std::string>>();
    image_size_ = meta.at("input").at("height").get<int64_t>();
    channels_ = meta.at("input").at("channels").get<int64_t>();
  } catch (const util::Json::exception& e) {
    throw std::runtime_error(path + ": unreadable aefx metadata: " + e.what());
  }
  if (kind_ != "classifier") {
    throw std::runtime_error(path + " is an aefx " + kind_ + " export; this needs classifier.pt");
  }
  module_.eval();
}

torch::Tensor ExportedClassifier::logits(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return module_.forward({images}).toTensor();
}

}  // namespace aefx::models
