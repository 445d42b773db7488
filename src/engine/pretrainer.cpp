#include "aefx/engine/pretrainer.h"

#include <torch/torch.h>

#include "aefx/dist/parallel.h"
#include "aefx/engine/optim.h"
#include "aefx/engine/precision.h"
#include "aefx/util/precision.h"

namespace aefx::engine {

double reconstruction_mse(models::Autoencoder& ae, const torch::Tensor& images, int64_t batch,
                          const torch::Device& device, torch::ScalarType dtype,
                          dist::Group& group) {
  torch::NoGradGuard no_grad;
  util::Autocast autocast(device, dtype);
  ae->eval();
  torch::Tensor sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  const auto [begin, n] = dist::shard(images.size(0), group.rank(), group.size());
  for (int64_t i = begin; i < n; i += batch) {
    auto x = data::to_float(images.narrow(0, i, std::min(batch, n - i)), device);
    auto recon = ae->to_images(ae->forward(ae->normalize(x)).to(torch::kFloat)).clamp(0, 1);
    sum += (recon - x).pow(2).sum().to(torch::kDouble);
  }
  ae->train();
  return group.sum(sum.item<double>()) / static_cast<double>(images.numel());
}

namespace {
/// At most kStemImages, every step-th one (the training split is already shuffled).
torch::Tensor stem_images(const data::ImageRows& images) {
  const int64_t step = std::max<int64_t>(1, images.size() / kStemImages);
  return images.rows(0, std::min(images.size(), step * kStemImages), step);
}
}  // namespace

void fit_stem(models::AutoencoderImpl& ae, const data::ImageRows& images) {
  if (!ae.has_stem() || images.size() == 0) return;
  ae.fit_whitening(stem_images(images));
}

Pretrainer::Pretrainer(const config::Config& cfg, const data::Dataset& train,
                       const torch::Device& device, dist::Group& group)
    : Pretrainer(cfg, data::ImageRows(train.images), device, group) {}

Pretrainer::Pretrainer(const config::Config& cfg, const data::ImageRows& train,
                       const torch::Device& device, dist::Group& group)
    : cfg_(cfg.pretrain),
      ae_(cfg.model, train.channels(), train.height()),
      dtype_(compute_dtype(cfg.precision, device)),
      device_(device),
      group_(group) {
  auto [mean, std] = train.channel_stats();
  ae_->set_normalization(mean, std);
  fit_stem(*ae_, train);
  // Rank 0's start reaches the other ranks with its weights (sync_from_main below).
  if (cfg_.epochs > 0 && train.size() > 0) ae_->init_from_data(stem_images(train));
  train.release();
  ae_->to(device);
  to_channels_last(*ae_);
  ae_->train();
  // The whole training set lives on the device as uint8; batches are gathered and augmented
  // there.
  images_ = train.to(device);
  opt_ = make_optimizer(cfg_.optimizer, ae_->parameters(), cfg_.lr, cfg_.weight_decay);
  dist::sync_from_main(*ae_, group_);
}

torch::Tensor Pretrainer::step(const torch::Tensor& indices) {
  // Mapped images (data.unlabeled) leave the resident set every so often: peak memory does not
  // grow with their number.
  if (++steps_ % 64 == 0) images_.release();
  auto x = data::to_float(images_.gather(indices), device());
  if (cfg_.augment) x = data::augment_batch(x, cfg_.crop_padding, true);
  auto clean = ae_->normalize(x);
  auto input = models::corrupt(clean, cfg_.mask_ratio, cfg_.mask_patch, cfg_.noise);
  auto target = ae_->target(clean);
  torch::Tensor recon;
  {
    util::Autocast autocast(device(), dtype_);
    recon = ae_->forward(input);
  }
  auto loss = torch::mse_loss(recon.to(torch::kFloat), target);  // the loss in fp32
  opt_->zero_grad();
  loss.backward();
  group_.average_gradients(ae_->parameters());
  opt_->step();
  return loss.detach();
}

int64_t Pretrainer::calibrate_batch_norm(int64_t images, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  std::vector<torch::nn::BatchNorm2dImpl*> norms;
  for (auto& m : ae_->modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) norms.push_back(bn);
  }
  if (norms.empty()) return 0;  // nothing to calibrate (the patch dictionary has no BatchNorm)
  // Momentum "none" makes the running statistics a cumulative average over the batches seen.
  std::vector<c10::optional<double>> momentum;
  for (auto* bn : norms) {
    momentum.push_back(bn->options.momentum());
    bn->reset_running_stats();
    bn->options.momentum(c10::nullopt);
  }
  ae_->train();
  util::Autocast autocast(device(), dtype_);  // the statistics of what training computes
  const int64_t n = std::min(images, images_.size());
  for (int64_t i = 0; i < n; i += batch_size) {
    ae_->forward(
        ae_->normalize(data::to_float(images_.rows(i, std::min(n, i + batch_size)), device())));
  }
  images_.release();
  for (size_t i = 0; i < norms.size(); ++i) norms[i]->options.momentum(momentum[i]);
  return n;
}

}  // namespace aefx::engine
