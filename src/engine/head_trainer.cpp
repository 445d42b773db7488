#include "aefx/engine/head_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>

#include "aefx/dist/parallel.h"
#include "aefx/engine/hooks.h"
#include "aefx/engine/optim.h"
#include "aefx/util/log.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"

namespace aefx::engine {

int64_t fitted_batch(const std::string& stage, const std::string& items, int64_t n, int64_t batch) {
  if (n >= batch) return batch;
  util::log_warn(util::strfmt("%s: %lld %s are fewer than one batch of %lld; using batches of %lld",
                              stage.c_str(), static_cast<long long>(n), items.c_str(),
                              static_cast<long long>(batch), static_cast<long long>(n)));
  return n;
}

std::pair<double, double> head_accuracy(models::Head& head, const torch::Tensor& codes,
                                        const torch::Tensor& labels, int64_t batch,
                                        torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  util::Autocast autocast(codes.device(), dtype);
  head->eval();
  const auto opts = torch::TensorOptions().device(codes.device());
  torch::Tensor correct = torch::zeros({}, opts.dtype(torch::kLong));
  torch::Tensor loss = torch::zeros({}, opts.dtype(torch::kDouble));
  for (int64_t i = 0; i < codes.size(0); i += batch) {
    const int64_t b = std::min(batch, codes.size(0) - i);
    auto logits = head->net->forward(codes.narrow(0, i, b)).to(torch::kFloat);
    auto target = labels.narrow(0, i, b);
    correct += (logits.argmax(1) == target).sum();
    loss +=
        torch::nn::functional::cross_entropy(
            logits, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .to(torch::kDouble);
  }
  head->train();
  const auto n = static_cast<double>(std::max<int64_t>(1, codes.size(0)));
  return {static_cast<double>(correct.item<int64_t>()) / n, loss.item<double>() / n};
}

namespace {
/// fn(rows) on consecutive blocks of `codes`' rows, each block's fp32 copy about 8 MB: below the
/// allocator's mmap threshold (util/runtime.cpp), so each block's temporaries reuse the heap.
/// Blocks of 1,024 rows of the CPU preset's 28,800 values (118 MB) were mapped and page-faulted
/// afresh every time: 140 s of the 90,000 rows' statistics and standardisation.
void for_each_block(const torch::Tensor& codes, const std::function<void(torch::Tensor)>& fn) {
  const int64_t block =
      std::max<int64_t>(1, (int64_t{8} << 20) / (4 * std::max<int64_t>(1, codes.size(1))));
  const int64_t n = codes.size(0);
  for (int64_t i = 0; i < n; i += block) fn(codes.narrow(0, i, std::min(block, n - i)));
}
}  // namespace

std::pair<torch::Tensor, torch::Tensor> column_mean_std(const torch::Tensor& codes) {
  torch::NoGradGuard no_grad;
  const auto opts = codes.options().dtype(torch::kDouble);
  auto sum = torch::zeros({codes.size(1)}, opts);
  for_each_block(codes, [&](const torch::Tensor& rows) { sum += rows.to(torch::kFloat).sum(0); });
  const auto n = static_cast<double>(codes.size(0));
  const auto mean = (sum / n).to(torch::kFloat);
  auto squares = torch::zeros({codes.size(1)}, opts);
  for_each_block(codes, [&](const torch::Tensor& rows) {
    squares += (rows.to(torch::kFloat) - mean).square().sum(0);
  });
  // Unbiased, as torch::std: NaN for a single row.
  auto std = (squares / (n - 1)).sqrt().to(torch::kFloat);
  return {mean, std};
}

void standardize_in_place(torch::Tensor& codes, const torch::Tensor& mean,
                          const torch::Tensor& std) {
  torch::NoGradGuard no_grad;
  // A block of rows at a time: on bf16 codes, sub_(fp32 mean) would compute the whole tensor
  // into an fp32 temporary first (10 GB for the CPU preset's cache).
  for_each_block(codes,
                 [&](torch::Tensor rows) { rows.copy_((rows.to(torch::kFloat) - mean) / std); });
}

HeadResult fit_head(torch::Tensor codes, const torch::Tensor& labels, torch::Tensor val_codes,
                    const torch::Tensor& val_labels, const HeadTrainOptions& options,
                    dist::Group& group) {
  const auto& cfg = options.classify;
  const auto& device = options.device;
  const std::string& stage = options.stage;
  HeadResult r;
  const double t0 = util::now_seconds();
  r.code_dim = codes.size(1);
  r.head = models::Head(r.code_dim, cfg.hidden, cfg.dropout, options.classes);
  // A feature that is constant in training (a border pixel that is always 0, a dead unit) is
  // divided by 1, not by its ~0 std: a value it takes at test time stays a small input.
  auto [code_mean, code_std] = column_mean_std(codes);
  code_std = torch::where(code_std < 1e-6, torch::ones_like(code_std), code_std);
  r.head->set_standardization(code_mean.cpu(), code_std.cpu());
  r.head->to(device);
  dist::sync_from_main(*r.head, group);
  // Standardised once, in place, instead of in every step: training then calls head->net.
  standardize_in_place(codes, r.head->code_mean, r.head->code_std);
  standardize_in_place(val_codes, r.head->code_mean, r.head->code_std);
  auto opt = make_optimizer(cfg.optimizer, r.head->parameters(), cfg.lr, cfg.weight_decay);

  const int64_t n = codes.size(0);
  const int64_t batch = fitted_batch(stage, "codes", n, cfg.batch_size);
  dist::EpochSampler sampler(n, batch, "classify.batch_size", options.seed, stage, group, device);
  const int64_t steps = sampler.steps_per_epoch();
  Trainer trainer(stage, cfg.epochs, steps, group, "Lower classify.lr");
  auto lr = std::make_shared<LrScheduleHook>(*opt, cfg.schedule, cfg.lr, cfg.epochs * steps, 0);
  auto lr_now = [lr] { return lr->current_lr(); };
  trainer.add_hook(lr);
  trainer.add_hook(std::make_shared<ProgressHook>(stage, lr_now));
  trainer.add_hook(std::make_shared<RankAverageHook>(group));
  // Every rank holds all codes and the same head, so validation needs no communication.
  trainer.add_hook(std::make_shared<ValidationHook>([&]() -> std::map<std::string, double> {
    const auto [acc, loss] = val_codes.size(0) > 0
                                 ? head_accuracy(r.head, val_codes, val_labels, 4096, options.dtype)
                                 : head_accuracy(r.head, codes, labels, 4096, options.dtype);
    return {{"val_accuracy", acc}, {"val_loss", loss}};
  }));
  auto history = std::make_shared<HistoryHook>(stage, lr_now, t0);
  trainer.add_hook(history);
  trainer.add_hook(std::make_shared<EpochLogHook>(
      *history, options.epoch_log, std::vector<std::string>{},
      [&stage](const metrics::EpochRecord& e) {
        return util::strfmt(
            "%s epoch %lld/%lld  loss %.4f  val_loss %.4f  val_acc %.4f  lr %.2e  %.0f "
            "codes/s  %.1f s",
            stage.c_str(), static_cast<long long>(e.epoch), static_cast<long long>(e.epochs),
            e.loss, e.val_loss, e.val_accuracy, e.lr, e.images_per_second, e.seconds);
      }));
  for (const auto& h : options.extra_hooks) trainer.add_hook(h);
  // Best epoch by validation accuracy: its weights are kept aside and restored at the end.
  auto best = std::make_shared<BestStateHook>(*r.head, "val_accuracy", device);
  trainer.add_hook(best);
  if (!options.state_file.empty()) {
    CheckpointSpec spec;
    spec.file = options.state_file;
    spec.kind = "head-training";
    spec.architecture = models::describe_head(r.code_dim, cfg.hidden, options.classes);
    spec.module = r.head.get();
    spec.optimizer = opt.get();
    spec.device = device;
    spec.seed = options.seed;
    trainer.enable_checkpoints(spec);
  }

  const auto ce =
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(cfg.label_smoothing);
  r.head->train();
  trainer.run(
      [&](TrainState& s) {
        auto idx = sampler.indices(s.epoch, s.step);
        torch::Tensor logits;
        {
          util::Autocast autocast(device, options.dtype);
          logits = r.head->net->forward(codes.index_select(0, idx));
        }
        auto loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat),
                                                         labels.index_select(0, idx), ce);
        opt->zero_grad();
        loss.backward();
        group.average_gradients(r.head->parameters());
        opt->step();
        return StepOutput{loss.detach(), batch};
      },
      options.resume);
  best->restore();
  r.head->eval();
  group.check_same(r.head->parameters(), "the trained head");
  r.best_val_accuracy = best->best();
  r.best_epoch = best->best_epoch();
  r.history = history->records();
  r.seconds = util::now_seconds() - t0;
  return r;
}

}  // namespace aefx::engine
