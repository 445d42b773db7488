#include "aefx/viz/pictures.h"

#include <torch/torch.h>

#include <atomic>

#include "aefx/metrics/pca.h"
#include "aefx/util/log.h"
#include "aefx/viz/viz.h"

namespace aefx::viz {
namespace {

/// An image of a uint8 C x H x W tensor (CPU) for viz.
Image to_viz_image(const torch::Tensor& chw) {
  auto hwc = chw.permute({1, 2, 0}).contiguous();
  Image img;
  img.height = static_cast<int>(hwc.size(0));
  img.width = static_cast<int>(hwc.size(1));
  img.channels = static_cast<int>(hwc.size(2));
  img.pixels.assign(hwc.data_ptr<uint8_t>(), hwc.data_ptr<uint8_t>() + hwc.numel());
  return img;
}

}  // namespace

bool pictures_enabled(const config::Config& cfg) {
  if (!cfg.report.pictures) return false;
  if (available()) return true;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    util::log_info("no pictures: aefx was built without OpenCV (AEFX_WITH_OPENCV=OFF)");
  return false;
}

void draw_reconstructions(models::Autoencoder& ae, const data::Dataset& images,
                          const torch::Device& device, const std::filesystem::path& file,
                          const std::string& title) {
  const int64_t n = std::min<int64_t>(16, images.size());
  if (n == 0) return;
  torch::Tensor recon;
  {
    torch::NoGradGuard no_grad;
    const bool was_training = ae->is_training();
    ae->eval();
    auto x = data::to_float(images.images.narrow(0, 0, n), device);
    recon = ae->to_images(ae->forward(ae->normalize(x)))
                .clamp(0, 1)
                .mul(255)
                .round()
                .to(torch::kU8)
                .cpu()
                .contiguous();
    if (was_training) ae->train();
  }
  std::vector<Image> in, out;
  std::vector<std::string> captions;
  auto labels = images.labels.narrow(0, 0, n).cpu();
  for (int64_t i = 0; i < n; ++i) {
    in.push_back(to_viz_image(images.images[i].cpu()));
    out.push_back(to_viz_image(recon[i]));
    const auto c = static_cast<size_t>(labels[i].item<int64_t>());
    captions.push_back(c < images.class_names.size() ? images.class_names[c] : "");
  }
  write_reconstructions(file, in, out, captions, title);
}

void draw_curves(const std::vector<metrics::EpochRecord>& records,
                 const std::filesystem::path& file) {
  auto series = [&](const std::string& stage, const std::string& label,
                    double metrics::EpochRecord::*field, double scale) {
    Series s;
    s.label = label;
    for (const auto& r : records) {
      if (r.stage != stage) continue;
      s.x.push_back(static_cast<double>(r.epoch));
      s.y.push_back(r.*field * scale);
    }
    return s;
  };
  std::vector<Chart> charts;
  using R = metrics::EpochRecord;
  charts.push_back({"pretrain: training loss",
                    "epoch",
                    "MSE (normalised input)",
                    {series("pretrain", "train loss", &R::loss, 1)},
                    true});
  charts.push_back({"pretrain: validation reconstruction",
                    "epoch",
                    "MSE (pixels in [0, 1])",
                    {series("pretrain", "val MSE", &R::val_mse, 1)},
                    true});
  charts.push_back({"classify: loss",
                    "epoch",
                    "cross-entropy",
                    {series("classify", "train loss", &R::loss, 1),
                     series("classify", "val loss", &R::val_loss, 1)},
                    true});
  charts.push_back({"classify: validation accuracy",
                    "epoch",
                    "accuracy (%)",
                    {series("classify", "val accuracy", &R::val_accuracy, 100)},
                    false});
  write_charts(file, charts, "training curves");
}

void draw_latents(const torch::Tensor& codes, const torch::Tensor& labels,
                  const std::vector<std::string>& class_names, const std::filesystem::path& file) {
  auto [proj, share] = metrics::pca_2d(codes);
  auto p = proj.to(torch::kDouble).contiguous();
  auto l = labels.cpu().to(torch::kLong).contiguous();
  std::vector<std::array<double, 2>> points;
  std::vector<int64_t> point_labels;
  for (int64_t i = 0; i < p.size(0); ++i) {
    points.push_back({p[i][0].item<double>(), p[i][1].item<double>()});
    point_labels.push_back(l[i].item<int64_t>());
  }
  write_scatter(file, points, point_labels, class_names,
                util::strfmt("latent codes of %lld test images: first two principal components",
                             static_cast<long long>(points.size())),
                util::strfmt("PC1 (%.1f%% of variance)", 100 * share[0]),
                util::strfmt("PC2 (%.1f%% of variance)", 100 * share[1]));
}

void ReconstructionsHook::after_epoch(engine::TrainState& s) {
  if ((s.epoch + 1) % every_ != 0 || s.epoch + 1 >= s.epochs) return;
  draw_reconstructions(
      ae_, shown_, device_, file_,
      util::strfmt("reconstructions after epoch %lld/%lld", static_cast<long long>(s.epoch + 1),
                   static_cast<long long>(s.epochs)));
}

}  // namespace aefx::viz
