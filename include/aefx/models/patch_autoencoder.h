#pragma once
// The patch-dictionary autoencoder (model.type patch): one layer of atoms over whitened patches,
// learned by reconstruction, the autoencoder form of Coates, Lee & Ng's k-means features.
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "aefx/models/autoencoder.h"

namespace aefx::models {

/// The dictionary (parameter "atoms", model.atoms x C k^2; used as unit rows) and its
/// encoding: at every position whose k x k patch lies wholly inside the image, the whitened
/// patch's response to each atom, s = d . x, split by sign and soft-thresholded:
/// [relu(s - t), relu(-s - t)] (t = model.threshold), 2 x atoms channels. Returns that one map.
/// With model.normalize_patches, s is first multiplied by gain(x) (buffer "energy": E).
class PatchEncoderImpl : public EncoderImpl {
 public:
  PatchEncoderImpl(const config::ModelConfig& cfg, int64_t in_channels);
  std::vector<torch::Tensor> forward(torch::Tensor x) override;
  /// The atoms as unit rows (differentiable: training moves `atoms`, the direction is what
  /// counts).
  torch::Tensor dictionary() const;
  /// Pixels on each side of the image whose patches are not whole (k / 2).
  int64_t border() const { return border_; }
  double threshold() const { return threshold_; }
  bool normalizes() const { return energy.defined(); }
  /// With model.normalize_patches, sqrt(2 E / (|x|^2 + E)) for whitened patches x along `dim`
  /// (kept as a dimension of size 1), in float: 1 for a patch of the mean energy E, the
  /// responses of a patch of much higher energy close to s sqrt(2 E) / |x|. Without, undefined.
  torch::Tensor gain(const torch::Tensor& x, int64_t dim) const;

  torch::Tensor atoms;
  /// model.normalize_patches: E, the training patches' mean squared whitened norm (set with the
  /// stem; a 0-d float). Undefined without.
  torch::Tensor energy;

 private:
  int64_t border_;
  double threshold_;
};
TORCH_MODULE(PatchEncoder);

/// Winner-take-all decoder with the encoder's atoms (tied, so it has no parameters of its own):
/// at each position, the atom with the largest |response| times its (thresholded) response,
/// the rest dropped; zero where the patch is not whole. Its reconstruction loss is that of online
/// spherical k-means, so training moves each atom towards the whitened patches it wins.
class PatchDecoderImpl : public DecoderImpl {
 public:
  explicit PatchDecoderImpl(std::shared_ptr<PatchEncoderImpl> encoder);
  torch::Tensor forward(torch::Tensor code) override;

 private:
  // Not registered: the atoms are the encoder's parameter, counted and saved once.
  std::shared_ptr<PatchEncoderImpl> encoder_;
};
TORCH_MODULE(PatchDecoder);

/// The whitening stem (model.whiten_patch, required), PatchEncoder and PatchDecoder. The code
/// is pooled from the one map (classify.pool_grids: one grid, classify.pooling).
class PatchAutoencoderImpl : public AutoencoderImpl {
 public:
  static constexpr const char* kType = "patch";
  PatchAutoencoderImpl(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);

  /// Each atom a whitened k x k patch at a random place of a random image, made a unit vector,
  /// as k-means starts from samples: with random directions, one atom would win the patches of
  /// several kinds (each at an angle to them) while others never win and never move.
  void init_from_data(const torch::Tensor& images) override;
  /// With model.normalize_patches: the encoder's E = trace(W M W^T), the mean squared norm of
  /// the whitened training patches.
  void whitening_fitted(const torch::Tensor& moment) override;
  /// decoder(encoder(x)) in values and gradients without the 2 x atoms x h x w code map: each
  /// whole patch's responses as one row of a matrix product, the winner by its |response|, its
  /// soft-thresholded response times its atom. Without gradients, a few images at a time.
  torch::Tensor forward(torch::Tensor normalized) override;
  /// pool_codes(encode(x), spec) by a faster road on the CPU without gradients (the frozen
  /// encoder's): the stem folded into the atoms, so one matrix product of the raw patches gives
  /// every response, then one pass per image thresholds and pools them (the 2 x atoms x h x w
  /// map is never written). Elsewhere, or for another spec, the generic path.
  torch::Tensor codes(const torch::Tensor& normalized, const CodeSpec& spec) override;
  int64_t forward_flops() const override;
  int64_t bottleneck_size() const override;
  CodeSpec code_spec(const config::ClassifyConfig& cfg) const override;
  int64_t code_dim(const CodeSpec& spec) const override;
  std::string describe() const override;
  void script_encoder(ScriptWriter& w, std::ostringstream& out) const override;
  void script_decoder(ScriptWriter& w, std::ostringstream& out) const override;
  std::string script_check() const override;

  // The methods above for a configuration alone (make_autoencoder's table).
  static int64_t flops(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);
  /// The winning atom's index and response at each whole-patch position: what the decoder
  /// reconstructs from.
  static int64_t bottleneck(const config::ModelConfig& cfg, int64_t image_size);
  static CodeSpec spec(const config::ModelConfig& cfg, const config::ClassifyConfig& classify);
  static int64_t dim(const config::ModelConfig& cfg, const CodeSpec& spec);
  static std::string description(const config::ModelConfig& cfg, int64_t channels,
                                 int64_t image_size);

 private:
  std::shared_ptr<PatchEncoderImpl> patch_encoder_;
};

}  // namespace aefx::models
