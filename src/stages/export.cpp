#include <torch/torch.h>

#include "aefx/models/torchscript.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {
namespace {

util::Json float_list(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

void export_models(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  util::require_file(ctx.run_dir / kClassifySummary, "classify");
  std::vector<std::string> class_names;
  try {
    class_names = util::read_json_file(ctx.run_dir / kClassifySummary)
                      .at("class_names")
                      .get<std::vector<std::string>>();
  } catch (const util::Json::exception& e) {
    throw std::runtime_error("cannot read class names from " +
                             (ctx.run_dir / kClassifySummary).string() + ": " + e.what());
  }
  // Export from copies on export.device (CPU by default, so the files load on any machine,
  // whatever trained them).
  engine::RunContext target = ctx;
  target.device = util::resolve_device(cfg.export_.device);
  auto ae = load_autoencoder(target);
  freeze(ae);
  auto head = load_head(target, static_cast<int64_t>(class_names.size()));
  const auto spec = models::code_spec(cfg.model, cfg.classify);
  const int64_t channels = ae->channels();

  util::Json test_metrics = util::Json::object();
  if (std::filesystem::exists(ctx.run_dir / kMetricsFile)) {
    const util::Json m = util::read_json_file(ctx.run_dir / kMetricsFile);
    try {
      test_metrics["test_accuracy"] = m.at("test_accuracy").get<double>();
      test_metrics["test_images"] = m.at("test_images").get<int64_t>();
    } catch (const util::Json::exception& e) {
      throw std::runtime_error("cannot parse " + (ctx.run_dir / kMetricsFile).string() + ": " +
                               e.what());
    }
  }
  auto meta_for = [&](const std::string& kind, const std::string& output) {
    const auto size = cfg.data.image_size;
    return util::Json::object(
        {{"kind", kind},
         {"format", "aefx-torchscript-1"},
         {"output", output},
         {"class_names", class_names},
         {"input", util::Json::object({{"channels", channels},
                                       {"height", size},
                                       {"width", size},
                                       {"layout", "NCHW"},
                                       {"dtype", "float32"},
                                       {"color", channels == 1 ? "grey" : "RGB"},
                                       {"value_range", std::vector<double>{0.0, 1.0}}})},
         {"mean", float_list(ae->mean)},
         {"std", float_list(ae->std)},
         {"model_type", config::name_of(cfg.model.type)},
         {"code_dim", models::code_dim(cfg.model, spec)},
         {"pooling", config::name_of(spec.pooling)},
         {"metrics", test_metrics},
         {"device", target.device.str()},
         {"config_yaml", config::to_yaml(cfg)},
         {"aefx_version", AEFX_VERSION},
         {"libtorch_version", std::to_string(TORCH_VERSION_MAJOR) + "." +
                                  std::to_string(TORCH_VERSION_MINOR) + "." +
                                  std::to_string(TORCH_VERSION_PATCH)}});
  };

  auto encoder = models::script_encoder(ae, spec);
  auto autoencoder = models::script_autoencoder(ae);
  auto classifier = models::script_classifier(ae, head, spec);

  // The export must compute what the native models compute, on the device it targets.
  torch::manual_seed(0);
  const auto probe = torch::randint(0, 256, {4, channels, cfg.data.image_size, cfg.data.image_size},
                                    torch::kUInt8);
  torch::NoGradGuard no_grad;
  const auto native = head->forward(compute_codes(ae, probe, spec, 4, target.device));
  const auto scripted = classifier.forward({data::to_float(probe, target.device)}).toTensor();
  const double diff = (native - scripted).abs().max().item<double>();
  if (diff > cfg.export_.tolerance) {
    throw std::runtime_error(
        "export check failed: classifier.pt differs from the native model by " +
        std::to_string(diff) + " (export.tolerance " + std::to_string(cfg.export_.tolerance) + ")");
  }
  models::save_scripted(encoder, (ctx.run_dir / "encoder.pt").string(),
                        util::dump_json(meta_for("encoder", "latent codes N x code_dim")));
  models::save_scripted(
      autoencoder, (ctx.run_dir / "autoencoder.pt").string(),
      util::dump_json(meta_for("autoencoder", "reconstructions N x " + std::to_string(channels) +
                                                  " x H x W in [0, 1]")));
  const auto meta = meta_for("classifier", "logits N x classes");
  models::save_scripted(classifier, (ctx.run_dir / "classifier.pt").string(),
                        util::dump_json(meta));
  auto model_json = meta;
  model_json["files"] = util::Json::object({{"encoder.pt", "images -> latent codes"},
                                            {"autoencoder.pt", "images -> reconstructions"},
                                            {"classifier.pt", "images -> logits"}});
  util::write_json_file(ctx.run_dir / kModelJson, model_json);
  util::log_info(
      util::strfmt("export: encoder.pt, autoencoder.pt, classifier.pt, model.json in %s "
                   "(max |native - exported| = %.2e)",
                   ctx.run_dir.string().c_str(), diff));
}

}  // namespace aefx::stages
