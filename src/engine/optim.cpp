#include "aefx/engine/optim.h"

#include <torch/torch.h>

#include <stdexcept>

namespace aefx::engine {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(config::Optimizer name,
                                                        std::vector<torch::Tensor> params,
                                                        double lr, double weight_decay) {
  switch (name) {
    case config::Optimizer::kAdamW:
      return std::make_unique<torch::optim::AdamW>(
          std::move(params), torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
    case config::Optimizer::kAdam:
      return std::make_unique<torch::optim::Adam>(
          std::move(params), torch::optim::AdamOptions(lr).weight_decay(weight_decay));
    case config::Optimizer::kSgd:
      return std::make_unique<torch::optim::SGD>(
          std::move(params),
          torch::optim::SGDOptions(lr).momentum(0.9).nesterov(true).weight_decay(weight_decay));
  }
  throw std::invalid_argument("unknown optimizer");  // not a value of the enum
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

void match_optimizer_state(torch::optim::Optimizer& opt, const torch::Device& device) {
  auto fit = [&](torch::Tensor t) {
    if (!t.defined()) return t;
    t = t.to(device);
    return t.dim() == 4 ? t.contiguous(torch::MemoryFormat::ChannelsLast) : t;
  };
  for (auto& entry : opt.state()) {
    auto& state = entry.second;
    if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(state.get())) {
      s->exp_avg(fit(s->exp_avg())).exp_avg_sq(fit(s->exp_avg_sq()));
      s->max_exp_avg_sq(fit(s->max_exp_avg_sq()));
    } else if (auto* s = dynamic_cast<torch::optim::AdamParamState*>(state.get())) {
      s->exp_avg(fit(s->exp_avg())).exp_avg_sq(fit(s->exp_avg_sq()));
      s->max_exp_avg_sq(fit(s->max_exp_avg_sq()));
    } else if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(state.get())) {
      s->momentum_buffer(fit(s->momentum_buffer()));
    } else {
      throw std::logic_error("match_optimizer_state: unknown optimizer state type");
    }
  }
}

}  // namespace aefx::engine
