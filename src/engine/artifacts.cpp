#include "aefx/engine/artifacts.h"

#include <torch/torch.h>

#include "aefx/engine/checkpoint.h"
#include "aefx/engine/optim.h"
#include "aefx/models/features.h"

namespace aefx::engine {

models::Autoencoder load_autoencoder(const config::Config& cfg, const RunFolder& folder,
                                     const torch::Device& device, dist::Group& group) {
  const int64_t channels = config::input_channels(cfg.data);
  models::Autoencoder ae(cfg.model, channels, cfg.data.image_size);
  load_checkpoint(
      folder.autoencoder(),
      {"autoencoder", models::describe_architecture(cfg.model, channels, cfg.data.image_size)}, *ae,
      "pretrain", group);
  ae->to(device);
  to_channels_last(*ae);
  return ae;
}

models::Head load_head(const config::Config& cfg, const RunFolder& folder, int64_t classes,
                       const torch::Device& device) {
  const auto& c = cfg.classify;
  models::Head head(models::code_dim(cfg.model, models::code_spec(cfg.model, c)), c.hidden,
                    c.dropout, classes);
  dist::Group alone;  // read by rank 0 alone (evaluate, export)
  load_checkpoint(folder.head(), {"head", models::head_architecture(cfg, classes)}, *head,
                  "classify", alone);
  head->to(device);
  head->eval();
  return head;
}

}  // namespace aefx::engine
