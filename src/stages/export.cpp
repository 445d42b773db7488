// export: TorchScript models that load in C++ (LibTorch) and Python (PyTorch) without aefx.
#include <torch/torch.h>

#include "aefx/data/dataset.h"
#include "aefx/engine/artifacts.h"
#include "aefx/models/features.h"
#include "aefx/models/torchscript.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {
namespace {

using util::Json;

std::vector<double> float_list(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

void export_models(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& folder = ctx.folder;
  util::require_file(folder.classify_summary(), "classify");
  const auto class_names = engine::ClassifySummary::read(folder)->class_names;
  // Export from copies on export.device (CPU by default, so the files load on any machine,
  // whatever trained them).
  const auto device = util::resolve_device(cfg.export_.device);
  const auto spec = models::code_spec(cfg.model, cfg.classify);
  models::FeatureExtractor features(engine::load_autoencoder(cfg, folder, device, ctx.group), spec,
                                    device);
  auto& ae = features.autoencoder();
  auto head = engine::load_head(cfg, folder, static_cast<int64_t>(class_names.size()), device);
  const int64_t channels = ae->channels();

  Json test_metrics = Json::object();
  if (const auto m = engine::Metrics::read(folder)) {
    test_metrics["test_accuracy"] = m->test_accuracy;
    test_metrics["test_images"] = m->test_images;
  }
  auto meta_for = [&](const std::string& kind, const std::string& output) {
    const auto size = cfg.data.image_size;
    return Json{{"kind", kind},
                {"format", "aefx-torchscript-1"},
                {"output", output},
                {"class_names", class_names},
                {"input",
                 {{"channels", channels},
                  {"height", size},
                  {"width", size},
                  {"layout", "NCHW"},
                  {"dtype", "float32"},
                  {"color", channels == 1 ? "grey" : "RGB"},
                  {"value_range", {0.0, 1.0}}}},
                {"mean", float_list(ae->mean)},
                {"std", float_list(ae->std)},
                {"model_type", config::name_of(cfg.model.type)},
                {"code_dim", features.code_dim()},
                {"pooling", config::name_of(spec.pooling)},
                {"metrics", test_metrics},
                {"device", device.str()},
                {"config_yaml", config::to_yaml(cfg)},
                {"aefx_version", AEFX_VERSION},
                {"libtorch_version", std::to_string(TORCH_VERSION_MAJOR) + "." +
                                         std::to_string(TORCH_VERSION_MINOR) + "." +
                                         std::to_string(TORCH_VERSION_PATCH)}};
  };

  auto encoder = models::script_encoder(ae, spec);
  auto autoencoder = models::script_autoencoder(ae);
  auto classifier = models::script_classifier(ae, head, spec);

  // The export must compute what the native models compute, on the device it targets.
  torch::manual_seed(0);
  const auto probe = torch::randint(0, 256, {4, channels, cfg.data.image_size, cfg.data.image_size},
                                    torch::kUInt8);
  torch::NoGradGuard no_grad;
  const auto native = head->forward(features.encode(probe, 4));
  const auto scripted = classifier.forward({data::to_float(probe, device)}).toTensor();
  const double diff = (native - scripted).abs().max().item<double>();
  if (diff > cfg.export_.tolerance) {
    throw std::runtime_error(
        "export check failed: classifier.pt differs from the native model by " +
        std::to_string(diff) + " (export.tolerance " + std::to_string(cfg.export_.tolerance) + ")");
  }
  models::save_scripted(encoder, folder.encoder_export().string(),
                        util::dump_json(meta_for("encoder", "latent codes N x code_dim")));
  models::save_scripted(
      autoencoder, folder.autoencoder_export().string(),
      util::dump_json(meta_for("autoencoder", "reconstructions N x " + std::to_string(channels) +
                                                  " x H x W in [0, 1]")));
  const auto meta = meta_for("classifier", "logits N x classes");
  models::save_scripted(classifier, folder.classifier_export().string(), util::dump_json(meta));
  auto name = [](const std::filesystem::path& p) { return p.filename().string(); };
  auto model_json = meta;
  model_json["files"] = {{name(folder.encoder_export()), "images -> latent codes"},
                         {name(folder.autoencoder_export()), "images -> reconstructions"},
                         {name(folder.classifier_export()), "images -> logits"}};
  util::write_json_file(folder.model_json(), model_json);
  util::log_info(
      util::strfmt("export: %s, %s, %s, %s in %s (max |native - exported| = %.2e)",
                   name(folder.encoder_export()).c_str(), name(folder.autoencoder_export()).c_str(),
                   name(folder.classifier_export()).c_str(), name(folder.model_json()).c_str(),
                   folder.dir().string().c_str(), diff));
}

}  // namespace aefx::stages
