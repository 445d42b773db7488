#include "aefx/models/patch_autoencoder.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "aefx/models/script_writer.h"
#include "aefx/util/parallel.h"
#include "aefx/util/precision.h"

namespace aefx::models {
namespace {

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
// The compiler's own AVX-512 and AVX2 versions of a hot loop, picked at load time for the CPU
// it runs on (GCC and Clang's function multiversioning): the build stays portable (no -march)
// and the loop runs 16 floats at a time where the CPU can.
#define AEFX_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AEFX_VECTOR_CLONES
#endif

/// A bf16 value's float: its 16 bits are the float's upper half.
inline float bf16_bits_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline float to_float(float v) { return v; }
inline float to_float(uint16_t v) { return bf16_bits_to_float(v); }

/// Adds one position's responses (a row of n) to a pooling cell's accumulators: sum_pos +=
/// relu(g v - t), sum_neg += relu(-g v - t), and their maxima when max_pos is not null.
template <typename T>
inline __attribute__((always_inline)) void accumulate(const T* row, float g, float t, int64_t n,
                                                      float* sum_pos, float* sum_neg,
                                                      float* max_pos, float* max_neg) {
  if (max_pos == nullptr) {
    for (int64_t k = 0; k < n; ++k) {
      const float v = to_float(row[k]) * g;
      sum_pos[k] += std::max(v - t, 0.0f);
      sum_neg[k] += std::max(-v - t, 0.0f);
    }
    return;
  }
  for (int64_t k = 0; k < n; ++k) {
    const float v = to_float(row[k]) * g;
    const float pos = std::max(v - t, 0.0f), neg = std::max(-v - t, 0.0f);
    sum_pos[k] += pos;
    sum_neg[k] += neg;
    max_pos[k] = std::max(max_pos[k], pos);
    max_neg[k] = std::max(max_neg[k], neg);
  }
}

// target_clones takes plain functions, not templates: one thin overload per element type.
AEFX_VECTOR_CLONES void accumulate_row(const uint16_t* row, float g, float t, int64_t n,
                                       float* sum_pos, float* sum_neg, float* max_pos,
                                       float* max_neg) {
  accumulate(row, g, t, n, sum_pos, sum_neg, max_pos, max_neg);
}
AEFX_VECTOR_CLONES void accumulate_row(const float* row, float g, float t, int64_t n,
                                       float* sum_pos, float* sum_neg, float* max_pos,
                                       float* max_neg) {
  accumulate(row, g, t, n, sum_pos, sum_neg, max_pos, max_neg);
}

/// PatchEncoderImpl::gain of a whitened patch x (n values): sqrt(2 E / (|x|^2 + E)). Sixteen
/// partial sums, so that the compiler may vectorise the sum without reordering it.
template <typename T>
inline __attribute__((always_inline)) float gain_of(const T* x, int64_t n, float energy) {
  float part[16] = {};
  int64_t k = 0;
  for (; k + 16 <= n; k += 16)
    for (int j = 0; j < 16; ++j) part[j] += to_float(x[k + j]) * to_float(x[k + j]);
  float sq = 0;
  for (; k < n; ++k) sq += to_float(x[k]) * to_float(x[k]);
  for (float p : part) sq += p;
  return 1.0f / std::sqrt((sq + energy) / (2 * energy));
}
AEFX_VECTOR_CLONES float position_gain(const uint16_t* x, int64_t n, float energy) {
  return gain_of(x, n, energy);
}
AEFX_VECTOR_CLONES float position_gain(const float* x, int64_t n, float energy) {
  return gain_of(x, n, energy);
}

/// The k x k patches of images x (n x C x H x W) at every whole position, a row each in
/// im2col's order (channel, row, column): an (n h w) x (C k k) matrix, h = H - k + 1. Written
/// by hand because im2col gives the transpose of each image's matrix, and on one core im2col and
/// the copy matmul makes of its transpose took half as long again as the product itself.
torch::Tensor patch_rows(const torch::Tensor& images, int64_t k) {
  const auto x = images.contiguous();
  const int64_t n = x.size(0), ch = x.size(1), ih = x.size(2), iw = x.size(3);
  const int64_t h = ih - k + 1, w = iw - k + 1, len = ch * k * k;
  auto out = torch::empty({n * h * w, len}, x.options());
  const size_t bytes = static_cast<size_t>(k) * x.element_size();
  const auto* src = static_cast<const char*>(x.data_ptr());
  auto* dst = static_cast<char*>(out.data_ptr());
  const int64_t pixel = x.element_size();
  for (int64_t j = 0; j < n; ++j)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < w; ++xx) {
        char* row = dst + ((j * h + y) * w + xx) * len * pixel;
        for (int64_t c = 0; c < ch; ++c)
          for (int64_t ky = 0; ky < k; ++ky, row += bytes)
            std::memcpy(row, src + (((j * ch + c) * ih + y + ky) * iw + xx) * pixel, bytes);
      }
  return out;
}

/// One image's code from its responses s (h x w positions, each a row of `row` values, float or
/// bf16's bits: the responses to the `atoms` atoms, then, where row > atoms (normalize_patches),
/// the position's whitened patch, for its gain with the patches' mean energy E): for each cell of
/// adaptive pooling's g x g grid (rows floor(i h / g) to ceil((i + 1) h / g)), the average and/or
/// max of relu(g s - t) and relu(-g s - t), g the position's gain (1 without normalize_patches).
/// `out` takes them in pool_codes' layout of the 2 x atoms x h x w map: every average cell
/// (channel-major), then every max cell. Written by hand because LibTorch has no fused op for it:
/// thresholding, concatenating and pooling with its ops writes and reads that map (2 x 1,600 x 26 x
/// 26 floats an image) several times.
template <typename T>
void pool_split_sign(const T* s, int64_t h, int64_t w, int64_t atoms, int64_t row, float t,
                     float energy, const CodeSpec& spec, float* out) {
  const int64_t g = spec.grids[0], cells = g * g;
  const bool avg = spec.uses_avg(), max = spec.uses_max();
  float* out_max = out + (avg ? 2 * atoms * cells : 0);
  std::vector<float> acc(4 * static_cast<size_t>(atoms));
  float* sum_pos = acc.data();
  float* sum_neg = sum_pos + atoms;
  float* max_pos = sum_neg + atoms;
  float* max_neg = max_pos + atoms;
  for (int64_t cy = 0; cy < g; ++cy) {
    const int64_t y0 = cy * h / g, y1 = ((cy + 1) * h + g - 1) / g;
    for (int64_t cx = 0; cx < g; ++cx) {
      const int64_t x0 = cx * w / g, x1 = ((cx + 1) * w + g - 1) / g;
      std::fill(acc.begin(), acc.end(), 0.0f);  // the maxima of values >= 0 start at 0 exactly
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t x = x0; x < x1; ++x) {
          const T* r = s + (y * w + x) * row;
          const float gain = row > atoms ? position_gain(r + atoms, row - atoms, energy) : 1.0f;
          accumulate_row(r, gain, t, atoms, sum_pos, sum_neg, max ? max_pos : nullptr, max_neg);
        }
      }
      const float inv = 1.0f / static_cast<float>((y1 - y0) * (x1 - x0));
      const int64_t cell = cy * g + cx;
      for (int64_t k = 0; k < atoms; ++k) {
        if (avg) {
          out[k * cells + cell] = sum_pos[k] * inv;
          out[(atoms + k) * cells + cell] = sum_neg[k] * inv;
        }
        if (max) {
          out_max[k * cells + cell] = max_pos[k];
          out_max[(atoms + k) * cells + cell] = max_neg[k];
        }
      }
    }
  }
}

/// fn of `chunk` images of x at a time, the results concatenated: inference on a few images at a
/// time where a whole batch's intermediate maps would not fit.
torch::Tensor map_chunks(const torch::Tensor& x, int64_t chunk,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  const int64_t n = x.size(0);
  if (n <= chunk) return fn(x);
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < n; i += chunk)
    parts.push_back(fn(x.narrow(0, i, std::min(chunk, n - i))));
  return torch::cat(parts);
}

/// A double as TorchScript source that reads back as the same double.
std::string exact(double v) {
  std::ostringstream ss;
  ss.precision(std::numeric_limits<double>::max_digits10);
  ss << v;
  return ss.str();
}

}  // namespace

PatchEncoderImpl::PatchEncoderImpl(const config::ModelConfig& cfg, int64_t in_channels)
    : border_(cfg.whiten_patch / 2), threshold_(cfg.threshold) {
  TORCH_CHECK(cfg.whiten_patch > 0 && cfg.atoms > 0,
              "model.type patch needs model.whiten_patch > 0 and model.atoms > 0");
  // Random directions in the whitened space: what `pretrain.epochs: 0` keeps, the control.
  auto a = torch::randn({cfg.atoms, in_channels});
  atoms = register_parameter("atoms", a / a.norm(2, 1, true));
  // Registered only when used: checkpoints of dictionaries without it keep their layout.
  if (cfg.normalize_patches) energy = register_buffer("energy", torch::ones({}));
}

torch::Tensor PatchEncoderImpl::gain(const torch::Tensor& x, int64_t dim) const {
  const auto e = energy.to(torch::kFloat);
  return ((x.to(torch::kFloat).square().sum(dim, true) + e) / (2 * e)).rsqrt();
}

torch::Tensor PatchEncoderImpl::dictionary() const {
  return atoms / atoms.norm(2, 1, true).clamp_min(1e-12);
}

std::vector<torch::Tensor> PatchEncoderImpl::forward(torch::Tensor x) {
  const int64_t b = border_;
  x = x.narrow(2, b, x.size(2) - 2 * b).narrow(3, b, x.size(3) - 2 * b);
  auto d = dictionary();
  auto s = torch::conv2d(x, d.to(x.scalar_type()).view({d.size(0), d.size(1), 1, 1}));
  if (normalizes()) s = s * gain(x, 1).to(s.scalar_type());
  return {torch::cat({(s - threshold_).relu_(), (-s - threshold_).relu_()}, 1)};
}

PatchDecoderImpl::PatchDecoderImpl(std::shared_ptr<PatchEncoderImpl> encoder)
    : encoder_(std::move(encoder)) {}

torch::Tensor PatchDecoderImpl::forward(torch::Tensor code) {
  const int64_t k = code.size(1) / 2, b = encoder_->border();
  auto response = code.narrow(1, 0, k) - code.narrow(1, k, k);  // B x K x h x w, signed
  auto winner = response.abs().argmax(1, true);                 // B x 1 x h x w
  auto value = response.gather(1, winner);                      // B x 1 x h x w
  auto d = encoder_->dictionary();
  auto patches = d.index_select(0, winner.flatten())
                     .view({code.size(0), code.size(2), code.size(3), d.size(1)})
                     .permute({0, 3, 1, 2});
  return torch::constant_pad_nd(patches * value, {b, b, b, b}, 0.0);
}

PatchAutoencoderImpl::PatchAutoencoderImpl(const config::ModelConfig& cfg, int64_t channels,
                                           int64_t image_size)
    : AutoencoderImpl(cfg, channels, image_size) {
  TORCH_CHECK(image_size >= cfg.whiten_patch, "model.type patch: images of side ", image_size,
              " are smaller than model.whiten_patch (", cfg.whiten_patch, ")");
  patch_encoder_ = std::make_shared<PatchEncoderImpl>(cfg, stem_channels(cfg, channels));
  encoder = register_module("encoder", patch_encoder_);
  decoder = register_module("decoder", std::make_shared<PatchDecoderImpl>(patch_encoder_));
}

int64_t PatchAutoencoderImpl::flops(const config::ModelConfig& cfg, int64_t channels,
                                    int64_t image_size) {
  const int64_t d = stem_channels(cfg, channels);
  const int64_t side = image_size - cfg.whiten_patch + 1;
  // The stem (a k x k convolution to C k^2 channels at every pixel), the responses to every
  // atom at every whole-patch position, and the decoder's one scaled atom per position.
  // With normalize_patches, each position's squared norm too.
  return 2 * d * d * image_size * image_size + 2 * cfg.atoms * d * side * side +
         2 * d * side * side * (cfg.normalize_patches ? 2 : 1);
}

int64_t PatchAutoencoderImpl::bottleneck(const config::ModelConfig& cfg, int64_t image_size) {
  const int64_t side = image_size - cfg.whiten_patch + 1;
  return 2 * side * side;
}

CodeSpec PatchAutoencoderImpl::spec(const config::ModelConfig&,
                                    const config::ClassifyConfig& classify) {
  return {classify.pool_grids, classify.pooling};
}

int64_t PatchAutoencoderImpl::dim(const config::ModelConfig& cfg, const CodeSpec& spec) {
  const int64_t g = spec.grids.empty() ? 0 : spec.grids[0];
  return 2 * cfg.atoms * g * g * ((spec.uses_avg() ? 1 : 0) + (spec.uses_max() ? 1 : 0));
}

std::string PatchAutoencoderImpl::description(const config::ModelConfig& cfg, int64_t channels,
                                              int64_t) {
  std::ostringstream ss;
  ss << (channels == 3 ? "" : "grey-") << "patch-autoencoder whiten=" << cfg.whiten_patch << "/"
     << cfg.whiten_eps << (cfg.whiten_center ? " centred" : "") << " atoms=" << cfg.atoms
     << " threshold=" << cfg.threshold << (cfg.normalize_patches ? " normalized" : "");
  return ss.str();
}

void PatchAutoencoderImpl::whitening_fitted(const torch::Tensor& moment) {
  if (!patch_encoder_->normalizes()) return;
  torch::NoGradGuard no_grad;
  const auto w = whiten.reshape({whiten.size(0), -1}).to(torch::kDouble);
  patch_encoder_->energy.fill_((torch::mm(w, moment) * w).sum().item<double>());
}

void PatchAutoencoderImpl::init_from_data(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  const int64_t k = config().whiten_patch, atoms = config().atoms, n = images.size(0);
  TORCH_CHECK(images.dim() == 4 && n > 0 && images.size(2) >= k && images.size(3) >= k,
              "init_from_data: expected N x C x H x W images with H, W >= ", k);
  const auto image = torch::randint(n, {atoms}, torch::kLong);
  const auto y = torch::randint(images.size(2) - k + 1, {atoms}, torch::kLong);
  const auto x = torch::randint(images.size(3) - k + 1, {atoms}, torch::kLong);
  auto picked = images.index_select(0, image);
  picked = normalize(picked.scalar_type() == torch::kByte ? picked.to(torch::kFloat).div_(255)
                                                          : picked.to(torch::kFloat));
  // atoms x C x h x w x k x k (a view), then atom i's patch at (y_i, x_i): im2col's order.
  auto patches = picked.unfold(2, k, 1).unfold(3, k, 1).permute({0, 2, 3, 1, 4, 5});
  const auto rows = torch::arange(atoms, torch::kLong);
  auto p = patches.index({rows, y, x}).reshape({atoms, -1});
  auto whitened = torch::mm(p, whiten.reshape({whiten.size(0), -1}).t());
  patch_encoder_->atoms.copy_(whitened / whitened.norm(2, 1, true).clamp_min(1e-6));
}

torch::Tensor PatchAutoencoderImpl::forward(torch::Tensor normalized) {
  const int64_t b = patch_encoder_->border();
  const auto t = patch_encoder_->threshold();
  auto reconstruct = [&](const torch::Tensor& whitened) {
    const int64_t m = whitened.size(0), d = whitened.size(1), h = whitened.size(2) - 2 * b,
                  w = whitened.size(3) - 2 * b;
    auto rows = whitened.narrow(2, b, h).narrow(3, b, w).permute({0, 2, 3, 1}).reshape({-1, d});
    auto dict = patch_encoder_->dictionary();
    auto s = torch::mm(rows, dict.t().to(rows.scalar_type()));  // m h w x atoms
    if (patch_encoder_->normalizes()) s = s * patch_encoder_->gain(rows, 1).to(s.scalar_type());
    auto winner = std::get<1>(s.abs().max(1, true));
    auto top = s.gather(1, winner);
    auto value = top.sign() * (top.abs() - t).clamp_min(0);  // the soft threshold
    auto recon = dict.index_select(0, winner.flatten()).to(value.scalar_type()) * value;
    return torch::constant_pad_nd(recon.view({m, h, w, d}).permute({0, 3, 1, 2}), {b, b, b, b},
                                  0.0);
  };
  auto whitened = target(normalized);
  if (torch::GradMode::is_enabled()) return reconstruct(whitened);
  // Inference (validation, pictures, export checks) may come in batches of hundreds: the
  // responses of a few images at a time.
  return map_chunks(whitened, 16, reconstruct);
}

torch::Tensor PatchAutoencoderImpl::codes(const torch::Tensor& normalized, const CodeSpec& spec) {
  if (torch::GradMode::is_enabled() || spec.grids.size() != 1 || spec.grids[0] < 1)
    return AutoencoderImpl::codes(normalized, spec);
  torch::NoGradGuard no_grad;
  if (!normalized.device().is_cpu()) {
    // The code map a few images at a time: at 1,600 atoms it is 8.6 MB an image, and a code
    // batch of 1,000 would hold several such maps at once.
    return map_chunks(normalized, 32,
                      [&](const torch::Tensor& x) { return AutoencoderImpl::codes(x, spec); });
  }
  const int64_t k = config().whiten_patch, atoms = config().atoms, g = spec.grids[0];
  const int64_t n = normalized.size(0), h = normalized.size(2) - k + 1,
                w = normalized.size(3) - k + 1;
  TORCH_CHECK(h >= g && w >= g, "patch codes: a ", g, " x ", g, " grid on a ", h, " x ", w, " map");
  // The stem is a k x k convolution: at a whole patch p (im2col's order) it gives W p, so the
  // responses D W p are one product of the raw patches with the folded atoms D W. With
  // normalize_patches, W's own rows follow D W's: the same product gives each position's
  // whitened patch W p, whose norm sets the position's gain.
  const auto stem = whiten.reshape({whiten.size(0), -1});
  auto folded = torch::mm(patch_encoder_->dictionary(), stem);
  const bool normalizes = patch_encoder_->normalizes();
  if (normalizes) folded = torch::cat({folded, stem});
  // The patches and the product in the compute dtype (bf16 under autocast): the patch rows are
  // half the bytes, and the responses are read as they come out.
  const auto dtype = normalized.scalar_type() == torch::kFloat
                         ? util::matmul_dtype(normalized.device())
                         : normalized.scalar_type();
  const auto folded_t = folded.t().to(dtype);
  const int64_t dim = code_dim(spec), row = folded.size(0);
  auto out = torch::empty({n, dim}, normalized.options().dtype(torch::kFloat));
  const float t = static_cast<float>(patch_encoder_->threshold());
  const float energy = normalizes ? patch_encoder_->energy.item<float>() : 0.0f;
  const int64_t threads = std::max(1, torch::get_num_threads());
  // The codes of c images from the i-th: their responses in one product, then each image pooled
  // on up to pool_threads threads.
  const auto encode = [&](int64_t i, int64_t c, unsigned pool_threads) {
    const auto s = torch::mm(patch_rows(normalized.narrow(0, i, c).to(dtype), k), folded_t);
    float* dst = out.data_ptr<float>() + i * dim;
    const auto pool = [&](const auto* src) {
      util::parallel_for_each(
          c,
          [&](int64_t j) {
            pool_split_sign(src + j * h * w * row, h, w, atoms, row, t, energy, spec,
                            dst + j * dim);
          },
          pool_threads);
    };
    if (s.scalar_type() == torch::kBFloat16)
      pool(reinterpret_cast<const uint16_t*>(s.data_ptr<at::BFloat16>()));
    else
      pool(s.to(torch::kFloat).data_ptr<float>());
  };
#ifdef _OPENMP
  if (threads > 1 && !omp_in_parallel()) {
    // Each of LibTorch's OpenMP threads encodes two images at a time from start to end, its
    // torch ops running on it alone (ATen and oneDNN run serially inside a parallel region), so
    // that no thread waits for the others between the steps (nor spins while ours pool).
    constexpr int64_t kPerThread = 2;
    const int64_t blocks = (n + kPerThread - 1) / kPerThread;
    std::exception_ptr error;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < blocks; ++b) {
      if (failed) continue;  // exceptions must not leave the parallel region
      try {
        torch::NoGradGuard no_grad;  // per thread
        encode(b * kPerThread, std::min(kPerThread, n - b * kPerThread), 1);
      } catch (...) {
#pragma omp critical(aefx_patch_codes)
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return out;
  }
#endif
  // A few images at a time, so that their responses (h w x atoms each) stay in the cache.
  for (int64_t i = 0; i < n; i += 2 * threads)
    encode(i, std::min(2 * threads, n - i), static_cast<unsigned>(threads));
  return out;
}

int64_t PatchAutoencoderImpl::forward_flops() const {
  return flops(config(), channels(), image_size());
}
int64_t PatchAutoencoderImpl::bottleneck_size() const { return bottleneck(config(), image_size()); }
CodeSpec PatchAutoencoderImpl::code_spec(const config::ClassifyConfig& cfg) const {
  return spec(config(), cfg);
}
int64_t PatchAutoencoderImpl::code_dim(const CodeSpec& s) const { return dim(config(), s); }
std::string PatchAutoencoderImpl::describe() const {
  return description(config(), channels(), image_size());
}

void PatchAutoencoderImpl::script_encoder(ScriptWriter& w, std::ostringstream& out) const {
  torch::NoGradGuard no_grad;
  const auto b = std::to_string(patch_encoder_->border());
  auto d = patch_encoder_->dictionary();
  out << "        x = torch.narrow(torch.narrow(x, 2, " << b << ", x.size(2) - 2 * " << b
      << "), 3, " << b << ", x.size(3) - 2 * " << b << ")\n";
  std::string e;
  if (patch_encoder_->normalizes()) {
    e = exact(patch_encoder_->energy.item<double>());
    out << "        g = torch.rsqrt((torch.sum(x * x, [1], True) + " << e << ") / (2.0 * " << e
        << "))\n";
  }
  out << "        x = torch.conv2d(x, "
      << w.tensor("enc.atoms", d.view({d.size(0), d.size(1), 1, 1}))
      << ", None, [1, 1], [0, 0], [1, 1], 1)\n"
      << (e.empty() ? "" : "        x = x * g\n")
      << "        t = " << exact(patch_encoder_->threshold()) << "\n"
      << "        feats.append(torch.cat([torch.relu(x - t), torch.relu(torch.neg(x) - t)], 1))\n";
}

void PatchAutoencoderImpl::script_decoder(ScriptWriter& w, std::ostringstream& out) const {
  torch::NoGradGuard no_grad;
  const auto b = std::to_string(patch_encoder_->border());
  const auto k = std::to_string(config().atoms);
  out << "        r = torch.narrow(x, 1, 0, " << k << ") - torch.narrow(x, 1, " << k << ", " << k
      << ")\n"
      << "        winner = torch.argmax(torch.abs(r), 1, True)\n"
      << "        value = torch.gather(r, 1, winner)\n"
      << "        atoms = " << w.tensor("dec.atoms", patch_encoder_->dictionary()) << "\n"
      << "        p = torch.index_select(atoms, 0, torch.flatten(winner))\n"
      << "        p = torch.permute(torch.reshape(p, [x.size(0), x.size(2), x.size(3), "
         "atoms.size(1)]), [0, 3, 1, 2])\n"
      << "        x = torch.constant_pad_nd(p * value, [" << b << ", " << b << ", " << b << ", "
      << b << "], 0.0)\n";
}

std::string PatchAutoencoderImpl::script_check() const {
  // A plain assert: the default resolver of define() knows no exception classes.
  const auto k = std::to_string(config().whiten_patch);
  return "    def check(self, images: Tensor):\n"
         "        assert images.dim() == 4 and images.size(1) == self.mean.size(1) and "
         "images.size(2) >= " +
         k + " and images.size(3) >= " + k + ", 'expected float images N x C x H x W in [0, 1], " +
         "H, W >= " + k + ", C as in model.json'\n";
}

}  // namespace aefx::models
