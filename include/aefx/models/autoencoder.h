#pragma once
// The autoencoder interface and its factory, the latent-code pooling and the classifier head.
// Each architecture is one class behind the interface, in its own file: conv_autoencoder.h
// (convolutional), dense_autoencoder.h (dense, as in the classic MNIST experiments) and
// patch_autoencoder.h (a dictionary of whitened patches).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstddef>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "aefx/config/config.h"

namespace aefx::models {

class ScriptWriter;

/// How the latent code is read off the encoder's stages: stage s is pooled to a
/// grids[s] x grids[s] grid of cells (0 = stage unused), each cell by `pooling`: avg, max, or
/// avgmax (both; the average first). Converts from a grid list, with average pooling.
struct CodeSpec {
  CodeSpec(std::vector<int64_t> grids_,
           config::Pooling pooling_ = config::Pooling::kAvg)  // NOLINT: implicit
      : grids(std::move(grids_)), pooling(pooling_) {}
  bool uses_avg() const { return pooling != config::Pooling::kMax; }
  bool uses_max() const { return pooling != config::Pooling::kAvg; }
  std::vector<int64_t> grids;
  config::Pooling pooling;
};

/// Encoder: normalised images -> the feature map of each stage (B x C x H x W each), from which
/// the latent code is pooled; the last one is what the decoder reconstructs from.
class EncoderImpl : public torch::nn::Module {
 public:
  virtual std::vector<torch::Tensor> forward(torch::Tensor x) = 0;
};

/// Decoder: the encoder's last stage map -> a reconstruction in normalised units (before
/// model.output_activation).
class DecoderImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor code) = 0;
};

/// An autoencoder for `channels` (1: grey, 3: RGB) x image_size x image_size images: an encoder
/// and a decoder (registered as "encoder" and "decoder"), and the training data's per-channel
/// mean/std as buffers, so the model carries its own normalisation: `normalize` maps [0, 1]
/// pixels to the network's input space. With model.whiten_patch k > 0 it also carries a frozen
/// ZCA-whitening stem (buffers "whiten" and "unwhiten", fitted to training images by
/// fit_whitening): the encoder sees the whitened image, C k^2 channels (each k x k patch of the
/// normalised image, decorrelated), and the decoder reconstructs it, so the reconstruction loss
/// weighs edges and texture instead of being dominated by colour and brightness. Each
/// architecture subclasses this and owns its FLOPs, code size, description and TorchScript
/// export; make_autoencoder builds the configured one.
class AutoencoderImpl : public torch::nn::Module {
 public:
  /// Reconstruction of an already normalised (and possibly corrupted) batch, in the units of
  /// `target`: normalised pixels, or the whitened image with a stem. With
  /// model.output_activation sigmoid, the decoder's output goes through a sigmoid (pixels in
  /// [0, 1]) and is then normalised.
  virtual torch::Tensor forward(torch::Tensor normalized);
  /// The encoder's stage maps for a normalised batch (through the stem, when there is one).
  std::vector<torch::Tensor> encode(const torch::Tensor& normalized);
  /// The latent codes of a normalised batch read off as `spec` says: pool_codes(encode(x),
  /// spec). An architecture may override it with a faster way to the same values (the frozen
  /// encoder's inference path: feature extraction, classify, evaluate).
  virtual torch::Tensor codes(const torch::Tensor& normalized, const CodeSpec& spec);
  /// What forward reconstructs for a clean normalised batch: the stem's output, or the batch.
  torch::Tensor target(const torch::Tensor& normalized) const;
  /// Images in [0, 1] from forward's output: the stem undone at each patch's centre pixel,
  /// then the normalisation; not clamped.
  torch::Tensor to_images(const torch::Tensor& reconstruction) const;
  torch::Tensor normalize(const torch::Tensor& images01) const;
  torch::Tensor denormalize(const torch::Tensor& normalized) const;
  void set_normalization(const torch::Tensor& mean, const torch::Tensor& std);
  /// Fits the whitening stem to training images (N x C x H x W, uint8 or floats in [0, 1]; on
  /// the CPU, before the model moves to another device), normalised with the model's mean/std
  /// chunk by chunk: the k x k patches' second moment M = U diag(l) U^T, whiten = U diag(1 /
  /// sqrt(l + eps)) U^T with eps = model.whiten_eps x mean(l) (ZCA with a ridge), unwhiten = the
  /// rows of its inverse that give each patch's centre pixel. With model.whiten_center, of the
  /// patches less their mean, the centring folded into whiten. No-op without a stem; throws
  /// std::runtime_error when the images do not vary at all.
  void fit_whitening(const torch::Tensor& images);
  /// Where training starts from the data, before pretraining (not for `pretrain.epochs: 0`,
  /// whose random weights are the control), from the images fit_whitening saw (uint8 or floats
  /// in [0, 1], on the CPU, normalisation and stem already fitted). The patch dictionary draws
  /// its atoms from whitened training patches here; the default does nothing.
  virtual void init_from_data(const torch::Tensor& images) { (void)images; }
  /// Called by fit_whitening with the patches' second moment M (double, C k^2 x C k^2) once
  /// whiten is set: what a subclass derives from the stem's statistics. The default does nothing.
  virtual void whitening_fitted(const torch::Tensor& moment) { (void)moment; }
  bool has_stem() const { return whiten.defined(); }

  const config::ModelConfig& config() const { return cfg_; }
  int64_t channels() const { return channels_; }
  int64_t image_size() const { return image_size_; }
  /// Channels the encoder sees and the decoder reconstructs: C k^2 with a stem, else C.
  static int64_t stem_channels(const config::ModelConfig& cfg, int64_t channels);

  /// Forward FLOPs per image (2 x multiply-adds of every convolution or linear layer). A
  /// training step costs about 3x this (forward, and the gradients of activations and weights).
  virtual int64_t forward_flops() const = 0;
  /// Values at the bottleneck (what the decoder reconstructs from). The compression ratio is
  /// channels x image_size^2 / this.
  virtual int64_t bottleneck_size() const = 0;
  /// The code spec a classify config asks for.
  virtual CodeSpec code_spec(const config::ClassifyConfig& cfg) const = 0;
  /// Length of the latent code pooled as `spec` says.
  virtual int64_t code_dim(const CodeSpec& spec) const = 0;
  /// One line describing the architecture for its input, stored in checkpoints to detect
  /// mismatches.
  virtual std::string describe() const = 0;

  /// TorchScript export (torchscript.h). Appends the lines of a method body that take `x`
  /// (normalised images) to the stage maps, appended to the list `feats`.
  virtual void script_encoder(ScriptWriter& w, std::ostringstream& out) const = 0;
  /// Appends the lines that take `x` (the last stage's map) to the decoder's output `x`.
  virtual void script_decoder(ScriptWriter& w, std::ostringstream& out) const = 0;
  /// The `check(self, images)` method: asserts on the input's shape.
  virtual std::string script_check() const = 0;

  std::shared_ptr<EncoderImpl> encoder;
  std::shared_ptr<DecoderImpl> decoder;
  torch::Tensor mean, std;  ///< buffers, shape C
  /// Stem buffers (undefined without one): C k^2 x C x k x k and C x C k^2 x 1 x 1.
  torch::Tensor whiten, unwhiten;

 protected:
  /// Registers the mean/std (and stem) buffers; the subclass registers "encoder", then
  /// "decoder".
  AutoencoderImpl(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);

 private:
  config::ModelConfig cfg_;
  int64_t channels_, image_size_;
};

/// The autoencoder for model.type (conv | dense | patch). Its table of types (autoencoder.cpp) is
/// the only place that looks at model.type; the free functions below use it too. Throws
/// std::invalid_argument for another type.
std::shared_ptr<AutoencoderImpl> make_autoencoder(const config::ModelConfig& cfg, int64_t channels,
                                                  int64_t image_size);

/// Holder of an autoencoder of any type, used like a TORCH_MODULE holder (`ae->forward(x)`,
/// `*ae`).
class Autoencoder : public torch::nn::ModuleHolder<AutoencoderImpl> {
 public:
  Autoencoder(std::nullptr_t) : ModuleHolder(nullptr) {}  // NOLINT: implicit, as TORCH_MODULE
  Autoencoder(std::shared_ptr<AutoencoderImpl> impl)      // NOLINT: implicit
      : ModuleHolder(std::move(impl)) {}
  /// make_autoencoder(cfg, channels, image_size).
  Autoencoder(const config::ModelConfig& cfg, int64_t channels, int64_t image_size)
      : ModuleHolder(make_autoencoder(cfg, channels, image_size)) {}
};

/// The masked / denoising corruption applied to the encoder's input during pretraining:
/// zero (the normalised mean) a `mask_ratio` fraction of patch x patch squares, then add
/// Gaussian noise of std `noise`. Returns the input unchanged when both are 0.
torch::Tensor corrupt(const torch::Tensor& normalized, double mask_ratio, int64_t patch,
                      double noise);

/// The latent code: each used stage's map pooled as `spec` says, flattened and concatenated
/// into B x D (per stage: the average cells, then the max cells).
torch::Tensor pool_codes(const std::vector<torch::Tensor>& stages, const CodeSpec& spec);

// What the methods above return, for a configuration alone (no weights are built).

/// AutoencoderImpl::code_spec; for a dense model, its code as it is (one 1 x 1 grid,
/// classify.pool_grids and pooling do not apply).
CodeSpec code_spec(const config::ModelConfig& model, const config::ClassifyConfig& cfg);
/// AutoencoderImpl::forward_flops on channels x image_size x image_size inputs.
int64_t forward_flops(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);
/// AutoencoderImpl::code_dim.
int64_t code_dim(const config::ModelConfig& model, const CodeSpec& spec);
/// AutoencoderImpl::bottleneck_size: the deepest stage's map for conv, code_size for dense.
int64_t bottleneck_size(const config::ModelConfig& model, int64_t image_size);
/// AutoencoderImpl::describe.
std::string describe_architecture(const config::ModelConfig& cfg, int64_t channels,
                                  int64_t image_size);

/// Classifier head on latent codes: standardises the code with stored train statistics, then
/// a linear layer or an MLP (hidden sizes, ReLU, dropout: FastDropout, same maths as
/// nn::Dropout).
class HeadImpl : public torch::nn::Module {
 public:
  HeadImpl(int64_t in_dim, const std::vector<int64_t>& hidden, double dropout, int64_t classes);
  torch::Tensor forward(torch::Tensor code);
  /// The code in the units the network sees: (code - code_mean) / code_std. Training
  /// standardises its cached codes once with this and then calls `net` directly.
  torch::Tensor standardize(const torch::Tensor& code) const;
  void set_standardization(const torch::Tensor& mean, const torch::Tensor& std);

  torch::nn::Sequential net{nullptr};
  torch::Tensor code_mean, code_std;  ///< buffers, shape D
};
TORCH_MODULE(Head);

std::string describe_head(int64_t in_dim, const std::vector<int64_t>& hidden, int64_t classes);

}  // namespace aefx::models
