#include "aefx/models/dense_autoencoder.h"

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>

#include "aefx/models/script_writer.h"

namespace aefx::models {
namespace nn = torch::nn;
namespace {

void add_activation(nn::Sequential& seq, config::Activation activation) {
  switch (activation) {
    case config::Activation::kRelu:
      seq->push_back(nn::ReLU(nn::ReLUOptions(true)));
      return;
    case config::Activation::kTanh:
      seq->push_back(nn::Tanh());
      return;
    case config::Activation::kSigmoid:
      seq->push_back(nn::Sigmoid());
      return;
  }
  throw std::invalid_argument("config key 'model.activation': not one of " +
                              config::names_of<config::Activation>());
}

/// Linear layers through `sizes`, starting from `in`, each followed by the activation.
nn::Sequential dense_stack(int64_t in, const std::vector<int64_t>& sizes,
                           config::Activation activation) {
  nn::Sequential seq;
  for (int64_t out : sizes) {
    seq->push_back(nn::Linear(in, out));
    add_activation(seq, activation);
    in = out;
  }
  return seq;
}

/// TorchScript for the flattened x through the "dense" Sequential (Linear and activation
/// modules) of the dense encoder or decoder `parent`.
void script_dense(ScriptWriter& w, const std::string& prefix, const torch::nn::Module& parent,
                  std::ostringstream& out) {
  auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(parent.named_children()["dense"]);
  TORCH_CHECK(seq, "script export: ", prefix, " is not a Sequential");
  out << "        x = torch.flatten(x, 1)\n";
  int layer = 0;
  for (const auto& m : seq->children()) {
    if (auto* lin = m->as<torch::nn::LinearImpl>()) {
      const std::string p = prefix + "." + std::to_string(layer++);
      out << "        x = torch.addmm(" << w.tensor(p + ".bias", lin->bias) << ", x, "
          << w.tensor(p + ".weight", lin->weight) << ".t())\n";
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

}  // namespace

DenseEncoderImpl::DenseEncoderImpl(const config::ModelConfig& cfg, int64_t in_channels,
                                   int64_t image_size) {
  auto sizes = cfg.hidden;
  sizes.push_back(cfg.code_size);
  dense_ = register_module(
      "dense", dense_stack(in_channels * image_size * image_size, sizes, cfg.activation));
}

std::vector<torch::Tensor> DenseEncoderImpl::forward(torch::Tensor x) {
  auto code = dense_->forward(x.flatten(1));
  return {code.view({code.size(0), code.size(1), 1, 1})};
}

DenseDecoderImpl::DenseDecoderImpl(const config::ModelConfig& cfg, int64_t out_channels,
                                   int64_t image_size)
    : channels_(out_channels), size_(image_size) {
  const std::vector<int64_t> sizes(cfg.hidden.rbegin(), cfg.hidden.rend());
  auto stack = dense_stack(cfg.code_size, sizes, cfg.activation);
  stack->push_back(nn::Linear(sizes.empty() ? cfg.code_size : sizes.back(),
                              out_channels * image_size * image_size));
  dense_ = register_module("dense", stack);
}

torch::Tensor DenseDecoderImpl::forward(torch::Tensor code) {
  return dense_->forward(code.flatten(1)).view({-1, channels_, size_, size_});
}

DenseAutoencoderImpl::DenseAutoencoderImpl(const config::ModelConfig& cfg, int64_t channels,
                                           int64_t image_size)
    : AutoencoderImpl(cfg, channels, image_size) {
  TORCH_CHECK(cfg.whiten_patch == 0, "model.whiten_patch: the whitening stem is for conv models");
  // The encoder's weights are drawn first, as they always were: same seed, same model.
  encoder =
      register_module("encoder", std::make_shared<DenseEncoderImpl>(cfg, channels, image_size));
  decoder =
      register_module("decoder", std::make_shared<DenseDecoderImpl>(cfg, channels, image_size));
}

int64_t DenseAutoencoderImpl::flops(const config::ModelConfig& cfg, int64_t channels,
                                    int64_t image_size) {
  // 2 x in x out per linear layer, encoder and decoder.
  std::vector<int64_t> sizes{channels * image_size * image_size};
  sizes.insert(sizes.end(), cfg.hidden.begin(), cfg.hidden.end());
  sizes.push_back(cfg.code_size);
  int64_t flops = 0;
  for (size_t i = 1; i < sizes.size(); ++i) flops += 2 * 2 * sizes[i - 1] * sizes[i];
  return flops;
}

int64_t DenseAutoencoderImpl::bottleneck(const config::ModelConfig& cfg, int64_t) {
  return cfg.code_size;
}

CodeSpec DenseAutoencoderImpl::spec(const config::ModelConfig&, const config::ClassifyConfig&) {
  return {{1}, config::Pooling::kAvg};
}

int64_t DenseAutoencoderImpl::dim(const config::ModelConfig& cfg, const CodeSpec&) {
  return cfg.code_size;
}

std::string DenseAutoencoderImpl::description(const config::ModelConfig& cfg, int64_t channels,
                                              int64_t image_size) {
  std::ostringstream ss;
  ss << "dense-autoencoder input=" << channels << "x" << image_size << "x" << image_size
     << " hidden=[";
  for (size_t i = 0; i < cfg.hidden.size(); ++i) ss << (i ? "," : "") << cfg.hidden[i];
  ss << "] code=" << cfg.code_size << " activation=" << config::name_of(cfg.activation)
     << (cfg.output_activation == config::OutputActivation::kIdentity
             ? std::string()
             : std::string(" output=") + config::name_of(cfg.output_activation));
  return ss.str();
}

int64_t DenseAutoencoderImpl::forward_flops() const {
  return flops(config(), channels(), image_size());
}
int64_t DenseAutoencoderImpl::bottleneck_size() const { return bottleneck(config(), image_size()); }
CodeSpec DenseAutoencoderImpl::code_spec(const config::ClassifyConfig& cfg) const {
  return spec(config(), cfg);
}
int64_t DenseAutoencoderImpl::code_dim(const CodeSpec& s) const { return dim(config(), s); }
std::string DenseAutoencoderImpl::describe() const {
  return description(config(), channels(), image_size());
}

void DenseAutoencoderImpl::script_encoder(ScriptWriter& w, std::ostringstream& out) const {
  // One "stage": the code as N x code_size x 1 x 1, as the native encoder returns it.
  script_dense(w, "enc.dense", *encoder, out);
  out << "        feats.append(torch.reshape(x, [x.size(0), x.size(1), 1, 1]))\n";
}

void DenseAutoencoderImpl::script_decoder(ScriptWriter& w, std::ostringstream& out) const {
  script_dense(w, "dec.dense", *decoder, out);
  const auto n = std::to_string(image_size());
  out << "        x = torch.reshape(x, [x.size(0), " << channels() << ", " << n << ", " << n
      << "])\n";
}

std::string DenseAutoencoderImpl::script_check() const {
  // A plain assert: the default resolver of define() knows no exception classes. A dense model
  // also needs the image size it was trained on.
  const auto n = std::to_string(image_size());
  return "    def check(self, images: Tensor):\n"
         "        assert images.dim() == 4 and images.size(1) == self.mean.size(1) and "
         "images.size(2) == " +
         n + " and images.size(3) == " + n + ", 'expected float images N x C x " + n + " x " + n +
         " in [0, 1], C as in model.json'\n";
}

}  // namespace aefx::models
