#include <torch/torch.h>

#include <limits>
#include <optional>

#include "aefx/engine/checkpoint.h"
#include "aefx/engine/trainer.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {
namespace {

/// Accuracy and mean cross-entropy of the head on codes already standardised with its
/// statistics.
std::pair<double, double> head_accuracy(models::Head& head, const torch::Tensor& codes,
                                        const torch::Tensor& labels, int64_t batch) {
  torch::NoGradGuard no_grad;
  head->eval();
  const auto opts = torch::TensorOptions().device(codes.device());
  torch::Tensor correct = torch::zeros({}, opts.dtype(torch::kLong));
  torch::Tensor loss = torch::zeros({}, opts.dtype(torch::kDouble));
  for (int64_t i = 0; i < codes.size(0); i += batch) {
    const int64_t b = std::min(batch, codes.size(0) - i);
    auto logits = head->net->forward(codes.narrow(0, i, b));
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

/// compute_codes in a group: each rank encodes its shard of `images`, then every rank gathers
/// all codes (flipped copies in rows N..2N-1, as compute_codes orders them).
torch::Tensor gathered_codes(models::Autoencoder& ae, const torch::Tensor& images,
                             const models::CodeSpec& spec, int64_t batch_size,
                             const torch::Device& device, bool with_flips, dist::Group& group) {
  const int64_t n = images.size(0);
  const auto [begin, end] = dist::shard(n, group.rank(), group.size());
  const int64_t m = end - begin;
  const double t0 = util::now_seconds();
  auto local = compute_codes(ae, images.narrow(0, begin, m), spec, batch_size, device, with_flips);
  const double t1 = util::now_seconds();
  auto full = torch::empty({with_flips ? 2 * n : n, local.size(1)}, local.options());
  group.gather_shards(local.narrow(0, 0, m), full.narrow(0, 0, n));
  if (with_flips) group.gather_shards(local.narrow(0, m, m), full.narrow(0, n, n));
  util::log_info(
      util::strfmt("classify: %lld of %lld images encoded on this rank in %.1f s, "
                   "the codes of %d ranks gathered in %.1f s",
                   static_cast<long long>(m), static_cast<long long>(n), t1 - t0, group.size(),
                   util::now_seconds() - t1));
  return full;
}

}  // namespace

HeadResult train_head(models::Autoencoder& ae, const data::Dataset& train, const data::Dataset& val,
                      const config::ClassifyConfig& cfg, const torch::Device& device,
                      const std::filesystem::path& state_file, bool resume,
                      const EpochCallback& on_epoch, dist::Group* group, int64_t seed) {
  freeze(ae);
  const double t0 = util::now_seconds();
  const auto spec = models::code_spec(ae->config(), cfg);
  torch::Tensor codes, val_codes;
  if (group) {
    codes =
        gathered_codes(ae, train.images, spec, cfg.code_batch_size, device, cfg.flip_codes, *group);
    val_codes = gathered_codes(ae, val.images, spec, cfg.code_batch_size, device, false, *group);
  } else {
    codes = compute_codes(ae, train.images, spec, cfg.code_batch_size, device, cfg.flip_codes);
    val_codes = compute_codes(ae, val.images, spec, cfg.code_batch_size, device);
  }
  auto labels = train.labels.to(device);
  if (cfg.flip_codes) labels = torch::cat({labels, labels});
  const double code_seconds = util::now_seconds() - t0;
  util::log_info(util::strfmt(
      "classify: %lld codes of %lld values in %.1f s (%.0f img/s)",
      static_cast<long long>(codes.size(0)), static_cast<long long>(codes.size(1)), code_seconds,
      static_cast<double>(codes.size(0) + val_codes.size(0)) / code_seconds));
  const auto classes = static_cast<int64_t>(train.class_names.size());
  auto r = fit_head(std::move(codes), labels, std::move(val_codes), val.labels.to(device), cfg,
                    classes, device, state_file, resume, on_epoch, group, seed);
  r.code_seconds = code_seconds;
  return r;
}

HeadResult fit_head(torch::Tensor codes, const torch::Tensor& labels, torch::Tensor val_codes,
                    const torch::Tensor& val_labels, const config::ClassifyConfig& cfg,
                    int64_t classes, const torch::Device& device,
                    const std::filesystem::path& state_file, bool resume,
                    const EpochCallback& on_epoch, dist::Group* group, int64_t seed,
                    const std::string& stage) {
  HeadResult r;
  const bool main = group == nullptr || group->is_main();
  const double t0 = util::now_seconds();
  r.code_dim = codes.size(1);
  r.head = models::Head(r.code_dim, cfg.hidden, cfg.dropout, classes);
  // A feature that is constant in training (a border pixel that is always 0, a dead unit) is
  // divided by 1, not by its ~0 std: a value it takes at test time stays a small input.
  auto code_std = codes.std(0);
  code_std = torch::where(code_std < 1e-6, torch::ones_like(code_std), code_std);
  r.head->set_standardization(codes.mean(0).cpu(), code_std.cpu());
  r.head->to(device);
  if (group) sync_from_main(*r.head, *group);
  // Standardised once, in place, instead of in every step: training then calls head->net.
  {
    torch::NoGradGuard no_grad;
    codes.sub_(r.head->code_mean).div_(r.head->code_std);
    val_codes.sub_(r.head->code_mean).div_(r.head->code_std);
  }
  auto opt = engine::make_optimizer(cfg.optimizer, r.head->parameters(), cfg.lr, cfg.weight_decay);

  const int64_t n = codes.size(0);
  const int64_t batch = fitted_batch(stage, "codes", n, cfg.batch_size);
  const int64_t steps = n / batch;
  const int64_t local_batch = local_batch_size("classify.batch_size", batch, group);
  const int64_t local_offset = group ? group->rank() * local_batch : 0;
  engine::Trainer trainer(stage, cfg.epochs, steps);
  if (group) trainer.set_agreement([group](int sig, bool bad) { return group->agree(sig, bad); });
  auto lr_hook =
      std::make_shared<engine::LrScheduleHook>(*opt, cfg.schedule, cfg.lr, cfg.epochs * steps, 0);
  trainer.add_hook(lr_hook);
  trainer.add_hook(
      std::make_shared<engine::ProgressHook>(stage, [lr_hook] { return lr_hook->current_lr(); }));
  // Best epoch by validation accuracy: its weights are copied aside and restored at the end.
  std::vector<torch::Tensor> best_state;
  r.best_val_accuracy = -1;
  torch::Tensor perm;
  const engine::CheckpointMeta meta{"head-training",
                                    models::describe_head(r.code_dim, cfg.hidden, classes), 0};
  auto save_state = [&](const engine::TrainState& s) {
    if (state_file.empty() || !main) return;
    auto m = meta;
    m.epoch = s.epoch;
    engine::save_checkpoint(
        state_file, m, *r.head, opt.get(), [&](torch::serialize::OutputArchive& a) {
          engine::write_resume_state(a, s, device);
          if (s.step > 0) a.write("aefx_classify_perm", perm.cpu());
          for (size_t i = 0; i < best_state.size(); ++i)
            a.write("aefx_classify_best_" + std::to_string(i), best_state[i]);
          a.write("aefx_classify_best", c10::IValue(r.best_val_accuracy));
          a.write("aefx_classify_best_epoch", c10::IValue(r.best_epoch));
          auto h = torch::empty({static_cast<int64_t>(r.history.size()), 5}, torch::kDouble);
          for (size_t e = 0; e < r.history.size(); ++e) {
            const auto& x = r.history[e];
            h[static_cast<int64_t>(e)] = torch::tensor(
                {x.loss, x.val_accuracy, x.seconds, x.val_loss, x.lr}, torch::kDouble);
          }
          a.write("aefx_classify_history", h);
        });
  };
  trainer.add_hook(std::make_shared<engine::EpochHook>(
      [&](engine::TrainState& s) {
        // Every rank holds all codes and the same head, so validation needs no communication.
        if (group) s.epoch_loss = group->sum(s.epoch_loss) / group->size();
        const auto [acc, val_loss] = val_codes.size(0) > 0
                                         ? head_accuracy(r.head, val_codes, val_labels, 4096)
                                         : head_accuracy(r.head, codes, labels, 4096);
        r.history.push_back({s.epoch_loss, acc, s.epoch_seconds, val_loss, lr_hook->current_lr()});
        util::log_info(util::strfmt(
            "%s epoch %lld/%lld  loss %.4f  val_loss %.4f  val_acc %.4f  lr %.2e  %.0f "
            "codes/s  %.1f s",
            stage.c_str(), static_cast<long long>(s.epoch + 1), static_cast<long long>(s.epochs),
            s.epoch_loss, val_loss, acc, lr_hook->current_lr(),
            static_cast<double>(s.samples_in_epoch) / s.epoch_seconds, s.epoch_seconds));
        if (on_epoch && main) {
          auto rec = epoch_record(stage, s, lr_hook->current_lr(), t0);
          rec.val_loss = val_loss;
          rec.val_accuracy = acc;
          on_epoch(rec);
        }
        if (acc > r.best_val_accuracy) {
          r.best_val_accuracy = acc;
          r.best_epoch = s.epoch + 1;
          torch::NoGradGuard no_grad;
          best_state.clear();
          for (const auto& t : r.head->parameters()) best_state.push_back(t.detach().clone());
        }
        save_state(engine::next_epoch_start(s));
      },
      [&](engine::TrainState& s) { save_state(s); }));

  engine::TrainState start;
  bool resuming = resume && !state_file.empty() && std::filesystem::exists(state_file);
  resuming = decided_by_main(group, resuming);
  if (resuming) {
    engine::load_checkpoint(
        state_file, meta, *r.head, "classify", opt.get(),
        [&](torch::serialize::InputArchive& a) {
          start = engine::read_resume_state(a, device);
          if (start.step > 0) {
            a.read("aefx_classify_perm", perm);
            perm = perm.to(device);
          }
          c10::IValue best, best_epoch;
          a.read("aefx_classify_best", best);
          a.read("aefx_classify_best_epoch", best_epoch);
          r.best_val_accuracy = best.toDouble();
          r.best_epoch = best_epoch.toInt();
          for (size_t i = 0; r.best_epoch > 0 && i < r.head->parameters().size(); ++i) {
            torch::Tensor t;
            a.read("aefx_classify_best_" + std::to_string(i), t);
            best_state.push_back(t.to(device));
          }
          torch::Tensor h;
          a.read("aefx_classify_history", h);
          for (int64_t e = 0; e < h.size(0); ++e) {
            auto col = [&](int64_t c) {
              return c < h.size(1) ? h[e][c].item<double>() : metrics::EpochRecord::kNone;
            };
            r.history.push_back({col(0), col(1), col(2), col(3), col(4)});
          }
        },
        group);
    r.head->to(device);
    match_optimizer_state(*opt, device);
    reseed_after_resume(group, seed, start.global_step);
    util::log_info(util::strfmt("classify: resuming from %s at epoch %lld/%lld, step %lld/%lld",
                                state_file.string().c_str(),
                                static_cast<long long>(start.epoch + 1),
                                static_cast<long long>(cfg.epochs),
                                static_cast<long long>(start.step), static_cast<long long>(steps)));
  }
  const auto ce =
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(cfg.label_smoothing);
  r.head->train();
  try {
    trainer.run(
        [&](engine::TrainState& s) {
          if (s.step == 0) perm = epoch_order(n, seed, stage, s.epoch, device);
          auto idx = perm.narrow(0, s.step * batch + local_offset, local_batch);
          auto loss = torch::nn::functional::cross_entropy(
              r.head->net->forward(codes.index_select(0, idx)), labels.index_select(0, idx), ce);
          opt->zero_grad();
          loss.backward();
          if (group) group->average_gradients(r.head->parameters());
          opt->step();
          return engine::StepOutput{loss.detach(), batch};
        },
        resuming ? &start : nullptr);
  } catch (const engine::NonFiniteLoss& e) {
    throw engine::NonFiniteLoss(
        std::string(e.what()) +
        (r.history.empty() || state_file.empty()
             ? std::string("; no epoch had finished, so nothing was saved")
             : "; the last good state, " + state_file.string() + " (after epoch " +
                   std::to_string(r.history.size()) + "), is kept") +
        ". Lower classify.lr and run again (with --restart when a checkpoint was kept)");
  }
  {
    torch::NoGradGuard no_grad;
    auto params = r.head->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_state[i]);
  }
  r.head->eval();
  if (group) group->check_same(dist::fingerprint(r.head->parameters()), "the trained head");
  r.head_seconds = util::now_seconds() - t0;
  return r;
}

void classify(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const double t0 = util::now_seconds();
  auto ae = load_autoencoder(ctx);
  auto [train, val] = load_train_val(cfg);
  util::throw_if_interrupted("during classify while loading the data");
  const bool main = ctx.is_main();
  std::optional<metrics::EpochLog> epoch_log;  // rank 0 only: the others read and write nothing
  if (main) epoch_log.emplace(ctx.run_dir);
  const bool pictures = main && pictures_enabled(cfg);
  const auto state_file = ctx.run_dir / kClassifyCheckpoint;
  if (main) {
    epoch_log->begin_stage(
        "classify",
        ctx.resume && std::filesystem::exists(state_file) ? std::numeric_limits<int64_t>::max() : 0,
        {});
  }
  auto r = train_head(
      ae, train, val, cfg.classify, ctx.device, state_file, ctx.resume,
      [&](const metrics::EpochRecord& rec) {
        epoch_log->add(rec);
        if (pictures) draw_curves(epoch_log->records(), ctx.run_dir / kCurvesPng);
      },
      ctx.group, cfg.seed);
  if (!main) return;
  const auto classes = static_cast<int64_t>(train.class_names.size());
  engine::save_checkpoint(ctx.run_dir / kHeadFile,
                          {"head", head_architecture(cfg, classes), r.best_epoch}, *r.head);
  util::log_info(util::strfmt("classify: best val_acc %.4f at epoch %lld", r.best_val_accuracy,
                              static_cast<long long>(r.best_epoch)));
  util::Json history = util::Json::array();
  for (size_t e = 0; e < r.history.size(); ++e) {
    history.push_back(util::Json::object({{"epoch", static_cast<int64_t>(e + 1)},
                                          {"loss", r.history[e].loss},
                                          {"val_accuracy", r.history[e].val_accuracy},
                                          {"val_loss", r.history[e].val_loss},
                                          {"seconds", r.history[e].seconds}}));
  }
  const util::Json summary = util::Json::object({{"stage", "classify"},
                                                 {"code_dim", r.code_dim},
                                                 {"best_epoch", r.best_epoch},
                                                 {"val_accuracy", r.best_val_accuracy},
                                                 {"code_seconds", r.code_seconds},
                                                 {"head_seconds", r.head_seconds},
                                                 {"seconds", util::now_seconds() - t0},
                                                 {"class_names", train.class_names},
                                                 {"history", history}});
  util::write_json_file(ctx.run_dir / kClassifySummary, summary);
}

// The raw-pixel baseline: the classify stage's head, trained the same way on the images' pixels
// instead of the frozen encoder's codes. What the autoencoder's features are worth is the
// difference between the two test accuracies.
std::string baseline_inputs(const config::Config& cfg) {
  std::string line;
  for (const auto& key : config::keys_where(config::kBaselineKeys))
    line += (line.empty() ? "" : " ") + key + "=" + config::get_value(cfg, key);
  return line;
}

torch::Tensor pixel_codes(const torch::Tensor& images, const torch::Device& device,
                          bool with_flips) {
  torch::NoGradGuard no_grad;
  auto x = data::to_float(images, device);
  auto flat = x.flatten(1);  // logical C, H, W order, whatever the memory layout
  return with_flips ? torch::cat({flat, x.flip({3}).flatten(1)}) : flat;
}

void baseline(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& c = cfg.classify;
  const double t0 = util::now_seconds();
  auto [train, val] = load_train_val(cfg);
  const auto test = data::load_split(cfg.data, data::Split::kTest, static_cast<uint64_t>(cfg.seed));
  util::throw_if_interrupted("during baseline while loading the data");
  auto labels = train.labels.to(ctx.device);
  if (c.flip_codes) labels = torch::cat({labels, labels});
  const auto classes = static_cast<int64_t>(train.class_names.size());
  auto codes = pixel_codes(train.images, ctx.device, c.flip_codes);
  util::log_info(util::strfmt("baseline: the classify head on %lld raw pixels per image, %lld rows",
                              static_cast<long long>(codes.size(1)),
                              static_cast<long long>(codes.size(0))));
  auto r = fit_head(std::move(codes), labels, pixel_codes(val.images, ctx.device, false),
                    val.labels.to(ctx.device), c, classes, ctx.device, {}, false, nullptr, nullptr,
                    cfg.seed, "baseline");
  int64_t correct = 0;
  {
    torch::NoGradGuard no_grad;
    r.head->eval();
    const int64_t batch = cfg.evaluate.batch_size;
    for (int64_t i = 0; i < test.size(); i += batch) {
      const int64_t b = std::min(batch, test.size() - i);
      auto pred = r.head->forward(pixel_codes(test.images.narrow(0, i, b), ctx.device, false));
      correct += pred.argmax(1).cpu().eq(test.labels.narrow(0, i, b)).sum().item<int64_t>();
    }
  }
  const double accuracy =
      test.size() > 0 ? static_cast<double>(correct) / static_cast<double>(test.size()) : 0.0;
  util::log_info(util::strfmt(
      "baseline: raw pixels, test accuracy %.4f on %lld images (best val_acc %.4f at epoch %lld)",
      accuracy, static_cast<long long>(test.size()), r.best_val_accuracy,
      static_cast<long long>(r.best_epoch)));
  const util::Json summary = util::Json::object({{"stage", "baseline"},
                                                 {"inputs", baseline_inputs(cfg)},
                                                 {"input", "pixels"},
                                                 {"input_dim", r.code_dim},
                                                 {"test_accuracy", accuracy},
                                                 {"test_images", test.size()},
                                                 {"val_accuracy", r.best_val_accuracy},
                                                 {"best_epoch", r.best_epoch},
                                                 {"seconds", util::now_seconds() - t0}});
  util::write_json_file(ctx.run_dir / kBaselineSummary, summary);
}

}  // namespace aefx::stages
