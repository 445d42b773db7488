#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "aefx/engine/checkpoint.h"
#include "aefx/engine/head_trainer.h"
#include "aefx/engine/hooks.h"
#include "aefx/engine/optim.h"
#include "aefx/engine/precision.h"
#include "aefx/engine/pretrainer.h"
#include "aefx/engine/runner.h"
#include "aefx/engine/trainer.h"
#include "aefx/models/autoencoder.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"
#include "test_util.h"

namespace aefx::engine {
namespace {

/// The single process: what every loop here runs in.
dist::Group& single() {
  static dist::Group group;
  return group;
}
using aefx::testing::TempDir;

/// `precision: bf16`: the forward pass computes in bf16, yet the weights, their gradients, the
/// optimizer state, BatchNorm's running statistics and the loss stay fp32; the steps differ from
/// fp32 steps (autocast took effect) but learn the same (close losses).
TEST(Pretrainer, Bf16StepsKeepFp32WeightsStateAndStatistics) {
  TempDir dir;
  auto [img, lab] = testing::synthetic_images(64, 10, 32, 3);
  const data::Dataset train{img, lab, data::cifar10_class_names()};
  std::map<std::string, std::vector<double>> losses;
  for (const char* precision : {"fp32", "bf16"}) {
    const auto cfg = config::parse_config(testing::tiny_config_yaml(dir / "d", dir / "r"),
                                          {std::string("precision=") + precision});
    torch::manual_seed(0);
    Pretrainer pt(cfg, train, torch::kCPU, single());
    EXPECT_EQ(pt.dtype(), std::string(precision) == "bf16" ? torch::kBFloat16 : torch::kFloat);
    for (int s = 0; s < 4; ++s) {
      const auto loss = pt.step(torch::arange(s * 16, s * 16 + 16));
      EXPECT_EQ(loss.scalar_type(), torch::kFloat);
      losses[precision].push_back(loss.item<double>());
    }
    for (const auto& p : pt.model()->parameters()) {
      EXPECT_EQ(p.scalar_type(), torch::kFloat);
      ASSERT_TRUE(p.grad().defined());
      EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
    }
    for (const auto& b : pt.model()->buffers())
      if (b.is_floating_point()) EXPECT_EQ(b.scalar_type(), torch::kFloat);
    ASSERT_FALSE(pt.optimizer().state().empty());
    for (const auto& [key, s] : pt.optimizer().state()) {
      const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*s);
      EXPECT_EQ(adam.exp_avg().scalar_type(), torch::kFloat);
    }
    const double mse = reconstruction_mse(pt.model(), img, 32, torch::kCPU, pt.dtype(), single());
    EXPECT_TRUE(std::isfinite(mse));
  }
  EXPECT_NE(losses["fp32"], losses["bf16"]);
  for (size_t i = 0; i < losses["fp32"].size(); ++i)
    EXPECT_NEAR(losses["bf16"][i], losses["fp32"][i], 0.05 * losses["fp32"][i]) << "step " << i;
}

TEST(Precision, AutoPicksBf16WhereTheDeviceComputesItNatively) {
  using config::Precision;
  EXPECT_EQ(compute_dtype(Precision::kFp32, torch::kCPU), torch::kFloat);
  EXPECT_EQ(compute_dtype(Precision::kBf16, torch::kCPU), torch::kBFloat16);
  EXPECT_EQ(compute_dtype(Precision::kFp32, torch::Device("cuda:0")), torch::kFloat);
  EXPECT_EQ(compute_dtype(Precision::kAuto, torch::Device("cuda:0")), torch::kBFloat16);
  EXPECT_EQ(compute_dtype(Precision::kAuto, torch::kCPU),
            util::cpu_has_bf16() ? torch::kBFloat16 : torch::kFloat);
}

struct Recorder : Hook {
  std::vector<std::string> events;
  void before_train(TrainState&) override { events.push_back("before_train"); }
  void before_step(TrainState& s) override {
    events.push_back("before_step" + std::to_string(s.step));
  }
  void after_step(TrainState&) override { events.push_back("after_step"); }
  void after_epoch(TrainState& s) override {
    events.push_back("after_epoch" + std::to_string(s.epoch) + ":" + std::to_string(s.epoch_loss));
  }
  void after_train(TrainState&) override { events.push_back("after_train"); }
};

TEST(Trainer, CallsHooksInOrderAndAveragesLossByBatchSize) {
  Trainer t("test", 2, 2, single());
  auto rec = std::make_shared<Recorder>();
  t.add_hook(rec);
  auto state = t.run([](TrainState& s) {
    // Step 0: loss 1 over 1 sample; step 1: loss 4 over 3 samples -> (1 + 12) / 4 = 3.25.
    return StepOutput{torch::tensor(s.step == 0 ? 1.0 : 4.0), s.step == 0 ? 1 : 3};
  });
  EXPECT_EQ(state.global_step, 4);
  const std::vector<std::string> want{
      "before_train",          "before_step0", "after_step", "before_step1", "after_step",
      "after_epoch0:3.250000", "before_step0", "after_step", "before_step1", "after_step",
      "after_epoch1:3.250000", "after_train"};
  EXPECT_EQ(rec->events, want);
}

TEST(Trainer, EndsHooksWhenAStepThrows) {
  Trainer t("test", 3, 2, single());
  auto rec = std::make_shared<Recorder>();
  t.add_hook(rec);
  EXPECT_THROW(t.run([](TrainState& s) -> StepOutput {
    if (s.global_step == 2) throw std::runtime_error("boom");
    return {torch::tensor(1.0), 1};
  }),
               std::runtime_error);
  EXPECT_EQ(rec->events.back(), "after_train");
  EXPECT_THROW(Trainer("test", 0, 1, single()), std::invalid_argument);
}

TEST(Trainer, NonFiniteLossNamesEpochAndStepAndSkipsTheEpochHooks) {
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    Trainer t("pretrain", 3, 4, single());
    auto rec = std::make_shared<Recorder>();
    t.add_hook(rec);
    try {
      t.run([&](TrainState& s) {
        return StepOutput{torch::tensor(s.epoch == 1 && s.step == 2 ? bad : 1.0), 1};
      });
      FAIL() << "expected NonFiniteLoss";
    } catch (const NonFiniteLoss& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("pretrain: the training loss is ") +
                         (std::isnan(bad) ? "NaN" : "infinite") + " at epoch 2/3, step 3/4"),
                std::string::npos)
          << msg;
    }
    // Epoch 1 ended normally; epoch 2 never reached its hooks (where checkpoints are saved).
    EXPECT_EQ(std::count(rec->events.begin(), rec->events.end(), "after_epoch0:1.000000"), 1);
    EXPECT_EQ(rec->events.back(), "after_train");
    EXPECT_EQ(std::count_if(rec->events.begin(), rec->events.end(),
                            [](const std::string& e) { return e.rfind("after_epoch1", 0) == 0; }),
              0);
  }
}

/// Records (epoch, step) of every step and saves the state it is given on interrupt.
struct Positions : Hook {
  std::vector<std::pair<int64_t, int64_t>> steps;
  std::vector<double> epoch_losses;
  TrainState saved;
  void before_step(TrainState& s) override { steps.emplace_back(s.epoch, s.step); }
  void after_epoch(TrainState& s) override { epoch_losses.push_back(s.epoch_loss); }
  void on_interrupt(TrainState& s) override { saved = s; }
};

TEST(Trainer, InterruptSavesThePositionAndResumeContinuesExactly) {
  auto loss_of = [](TrainState& s) {
    if (s.global_step == 6) util::set_interrupt_signal(SIGINT);  // arrives during the 7th step
    return StepOutput{torch::tensor(static_cast<double>(s.global_step % 5) + 0.25), 2};
  };
  Trainer plain("test", 3, 4, single());
  auto all = std::make_shared<Positions>();
  plain.add_hook(all);
  plain.run([](TrainState& s) {
    return StepOutput{torch::tensor(static_cast<double>(s.global_step % 5) + 0.25), 2};
  });

  Trainer first("test", 3, 4, single());
  auto before = std::make_shared<Positions>();
  first.add_hook(before);
  try {
    first.run(loss_of);
    FAIL() << "expected Interrupted";
  } catch (const util::Interrupted& e) {
    EXPECT_EQ(e.signal(), SIGINT);
    EXPECT_NE(std::string(e.what()).find("interrupted by SIGINT during test at epoch 2/3 after "
                                         "step 3/4"),
              std::string::npos)
        << e.what();
  }
  util::set_interrupt_signal(0);
  EXPECT_EQ(before->saved.epoch, 1);
  EXPECT_EQ(before->saved.step, 3);
  EXPECT_EQ(before->saved.global_step, 7);

  Trainer second("test", 3, 4, single());
  auto after = std::make_shared<Positions>();
  second.add_hook(after);
  second.run_from(loss_of, &before->saved);
  auto joined = before->steps;
  joined.insert(joined.end(), after->steps.begin(), after->steps.end());
  EXPECT_EQ(joined, all->steps);
  auto losses = before->epoch_losses;
  losses.insert(losses.end(), after->epoch_losses.begin(), after->epoch_losses.end());
  EXPECT_EQ(losses, all->epoch_losses);  // the interrupted epoch's mean includes both parts
}

TEST(Trainer, AgreementStopsEveryRankAfterTheSameStep) {
  // What the other ranks report: a signal after global step 5, a NaN after step 9.
  auto group = [](int signal, bool bad, int64_t step) {
    return std::make_pair(step == 5 ? SIGTERM : signal, bad || step == 9);
  };
  int64_t steps_done = 0;
  auto constant = [&](TrainState&) {
    ++steps_done;
    return StepOutput{torch::tensor(0.5), 1};
  };
  Trainer t("test", 3, 4, single());
  auto pos = std::make_shared<Positions>();
  t.add_hook(pos);
  t.set_agreement([&](int signal, bool bad) { return group(signal, bad, steps_done); });
  try {
    t.run(constant);
    FAIL() << "expected Interrupted";
  } catch (const util::Interrupted& e) {
    // This rank had no signal of its own: it stops with the group's, after the same step.
    EXPECT_EQ(e.signal(), SIGTERM);
    EXPECT_EQ(pos->saved.global_step, 5);
  }
  util::set_interrupt_signal(0);

  Trainer u("test", 3, 4, single());
  u.set_agreement(
      [&](int signal, bool bad) { return std::make_pair(signal, bad || steps_done == 9); });
  steps_done = 0;
  try {
    u.run(constant);
    FAIL() << "expected NonFiniteLoss";
  } catch (const NonFiniteLoss& e) {
    EXPECT_NE(std::string(e.what()).find("test: another rank's training loss is NaN or infinite "
                                         "at epoch 3/3, step 1/4"),
              std::string::npos)
        << e.what();
  }
}

TEST(Schedule, WarmupCosineAndConstant) {
  using config::Schedule;
  EXPECT_DOUBLE_EQ(scheduled_lr(Schedule::kCosine, 1.0, 0, 100, 10), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(Schedule::kCosine, 1.0, 9, 100, 10), 1.0);
  EXPECT_DOUBLE_EQ(scheduled_lr(Schedule::kCosine, 1.0, 10, 100, 10), 1.0);
  EXPECT_NEAR(scheduled_lr(Schedule::kCosine, 1.0, 55, 100, 10), 0.5, 1e-12);
  EXPECT_NEAR(scheduled_lr(Schedule::kCosine, 1.0, 100, 100, 10), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(scheduled_lr(Schedule::kConstant, 0.3, 77, 100, 0), 0.3);
}

TEST(Schedule, HookSetsOptimizerLr) {
  auto p = torch::zeros({1}, torch::requires_grad());
  auto opt = make_optimizer(config::Optimizer::kSgd, {p}, 0.5, 0.0);
  LrScheduleHook hook(*opt, config::Schedule::kCosine, 0.5, 10, 0);
  TrainState s;
  s.global_step = 5;
  hook.before_step(s);
  EXPECT_NEAR(opt->param_groups()[0].options().get_lr(), 0.25, 1e-12);
}

config::ModelConfig tiny_model(int64_t w0 = 4) {
  config::ModelConfig m;
  m.widths = {w0, 8};
  m.blocks = {1, 1};
  return m;
}

std::string load_error(const std::filesystem::path& file, const CheckpointMeta& want,
                       torch::nn::Module& m) {
  try {
    load_checkpoint(file, want, m, "pretrain", single());
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, RoundTripWithOptimizer) {
  TempDir dir;
  torch::manual_seed(0);
  models::Autoencoder a(tiny_model(), 3, 32);
  auto opt = make_optimizer(config::Optimizer::kAdamW, a->parameters(), 1e-3, 0);
  auto loss = a->forward(torch::rand({2, 3, 8, 8})).pow(2).mean();
  loss.backward();
  opt->step();
  const CheckpointMeta meta{"autoencoder", models::describe_architecture(tiny_model(), 3, 32), 3};
  save_checkpoint(dir / "a.pt", meta, *a, opt.get());
  models::Autoencoder b(tiny_model(), 3, 32);
  auto opt_b = make_optimizer(config::Optimizer::kAdamW, b->parameters(), 1e-3, 0);
  auto got = load_checkpoint(dir / "a.pt", meta, *b, "pretrain", single(), opt_b.get());
  EXPECT_EQ(got.epoch, 3);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& kv : pa) EXPECT_TRUE(torch::equal(kv.value(), pb[kv.key()])) << kv.key();
  for (const auto& kv : a->named_buffers())
    EXPECT_TRUE(torch::equal(kv.value(), b->named_buffers()[kv.key()]));
  EXPECT_FALSE(std::filesystem::exists(dir / "a.pt.tmp"));
}

TEST(Checkpoint, MismatchesAndDamageAreNamed) {
  TempDir dir;
  models::Autoencoder a(tiny_model(), 3, 32);
  const CheckpointMeta meta{"autoencoder", models::describe_architecture(tiny_model(), 3, 32)};
  save_checkpoint(dir / "a.pt", meta, *a);
  models::Autoencoder wide(tiny_model(6), 3, 32);
  const auto arch = load_error(
      dir / "a.pt", {"autoencoder", models::describe_architecture(tiny_model(6), 3, 32)}, *wide);
  EXPECT_NE(arch.find("does not match the configured model"), std::string::npos) << arch;
  EXPECT_NE(load_error(dir / "a.pt", {"head", meta.architecture}, *a)
                .find("holds a autoencoder, expected a head"),
            std::string::npos);
  const auto missing = load_error(dir / "none.pt", meta, *a);
  EXPECT_NE(missing.find("none.pt"), std::string::npos);
  EXPECT_NE(missing.find("'pretrain' stage"), std::string::npos);
  // Truncate a copy: a clear error, not a crash.
  const auto size = std::filesystem::file_size(dir / "a.pt");
  std::filesystem::copy_file(dir / "a.pt", dir / "cut.pt");
  std::filesystem::resize_file(dir / "cut.pt", size / 2);
  EXPECT_NE(load_error(dir / "cut.pt", meta, *a).find("corrupt or truncated"), std::string::npos);
  testing::write_bytes(dir / "junk.pt", "hello");
  EXPECT_NE(load_error(dir / "junk.pt", meta, *a).find("junk.pt"), std::string::npos);
}

TEST(Checkpoint, ResumeStateRestoresPositionAndRandomStream) {
  TempDir dir;
  models::Autoencoder a(tiny_model(), 3, 32);
  TrainState s;
  s.epoch = 2;
  s.step = 3;
  s.global_step = 11;
  s.samples_in_epoch = 24;
  s.epoch_seconds = 1.5;
  s.epoch_losses = torch::tensor({1.0, 2.0, 3.0, 0.0}, torch::kDouble);
  torch::manual_seed(7);
  torch::rand({3});
  const CheckpointMeta meta{"autoencoder", models::describe_architecture(tiny_model(), 3, 32)};
  save_checkpoint(dir / "s.pt", meta, *a, nullptr, [&](torch::serialize::OutputArchive& ar) {
    write_resume_state(ar, s, torch::kCPU);
  });
  const auto next = torch::rand({5});
  torch::manual_seed(123);  // what happens in between (a new process seeds afresh)
  TrainState got;
  load_checkpoint(
      dir / "s.pt", meta, *a, "pretrain", single(), nullptr,
      [&](torch::serialize::InputArchive& ar) { got = read_resume_state(ar, torch::kCPU); });
  EXPECT_TRUE(torch::equal(torch::rand({5}), next));
  EXPECT_EQ(got.epoch, 2);
  EXPECT_EQ(got.step, 3);
  EXPECT_EQ(got.global_step, 11);
  EXPECT_EQ(got.samples_in_epoch, 24);
  EXPECT_DOUBLE_EQ(got.epoch_seconds, 1.5);
  EXPECT_TRUE(torch::equal(got.epoch_losses, s.epoch_losses));
  // A checkpoint without resume state is named when resuming from it is asked for.
  save_checkpoint(dir / "plain.pt", meta, *a);
  try {
    load_checkpoint(
        dir / "plain.pt", meta, *a, "pretrain", single(), nullptr,
        [&](torch::serialize::InputArchive& ar) { read_resume_state(ar, torch::kCPU); });
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("plain.pt: it holds no resume state"), std::string::npos)
        << e.what();
  }
}

TEST(Registry, UnknownStage) {
  StageRegistry r;
  int calls = 0;
  r.add("x", [&](RunContext&) { ++calls; });
  EXPECT_TRUE(r.contains("x"));
  RunContext ctx{config::Config{}, RunFolder("unused"), torch::kCPU, single()};
  r.get("x")(ctx);
  EXPECT_EQ(calls, 1);
  EXPECT_THROW(r.get("y"), std::invalid_argument);
}

/// A registry with the built-in stages' shape (pretrain and classify resumable and distributed).
StageRegistry shaped_registry() {
  StageRegistry r;
  auto none = [](RunContext&) {};
  r.add("pretrain", none, &RunFolder::pretrain_state, true);
  r.add("classify", none, &RunFolder::classify_state, true);
  r.add("evaluate", none);
  r.add("export", none);
  return r;
}

std::vector<std::string> names(const std::vector<PlannedStage>& plan, StageAction action) {
  std::vector<std::string> out;
  for (const auto& p : plan)
    if (p.action == action) out.push_back(p.name);
  return out;
}

TEST(Plan, FreshRunsEverythingResumeSkipsDoneAndResumesTheStopped) {
  const RunFolder folder("/runs/a");
  const auto registry = shaped_registry();
  const std::vector<std::string> all{"pretrain", "classify", "evaluate", "export"};
  auto no_state = [](RunFile) { return false; };
  Progress none;
  auto plan = plan_stages(folder, all, none, {}, registry, no_state);
  EXPECT_EQ(names(plan, StageAction::kRun), all);

  Progress stopped;
  stopped.exists = true;
  stopped.completed = {"pretrain"};
  stopped.unfinished = "classify";
  stopped.stopped_by = "SIGINT";
  RunOptions resume;
  resume.resume = true;
  plan = plan_stages(folder, all, stopped, resume, registry, no_state);
  EXPECT_EQ(names(plan, StageAction::kSkip), std::vector<std::string>{"pretrain"});
  EXPECT_EQ(names(plan, StageAction::kResume), std::vector<std::string>{"classify"});
  EXPECT_EQ(names(plan, StageAction::kRun), (std::vector<std::string>{"evaluate", "export"}));
  // Without --resume a finished stage is run again (and no state file: nothing to protect).
  plan = plan_stages(folder, all, stopped, {}, registry, no_state);
  EXPECT_EQ(names(plan, StageAction::kRun), all);
}

TEST(Plan, RefusalsNameTheFolderAndTheWayOut) {
  const RunFolder folder("/runs/a");
  const auto registry = shaped_registry();
  auto error = [&](const std::vector<std::string>& stages, const Progress& p, const RunOptions& o,
                   bool state) {
    try {
      plan_stages(folder, stages, p, o, registry, [&](RunFile) { return state; });
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  Progress stopped;
  stopped.exists = true;
  stopped.completed = {"pretrain"};
  stopped.unfinished = "classify";
  stopped.stopped_by = "SIGTERM";
  // Unfinished resumable work is not thrown away silently.
  EXPECT_EQ(error({"classify"}, stopped, {}, true),
            "run folder /runs/a holds unfinished 'classify' work (stopped by SIGTERM) saved in "
            "/runs/a/checkpoints/classify_last.pt: continue it with --resume, or start over with "
            "--restart");
  RunOptions restart;
  restart.restart = true;
  EXPECT_EQ(error({"classify"}, stopped, restart, true), "");
  RunOptions both;
  both.resume = both.restart = true;
  EXPECT_EQ(error({"classify"}, stopped, both, true), "--resume and --restart exclude each other");
  RunOptions resume;
  resume.resume = true;
  EXPECT_EQ(error({"classify"}, Progress{}, resume, false),
            "--resume: /runs/a holds no earlier run to resume; run without --resume");
  RunOptions two = resume;
  two.dist.world_size = 2;
  EXPECT_NE(
      error({"classify"}, stopped, two, true).find("was run by 1 process(es), this run has 2"),
      std::string::npos);
  EXPECT_EQ(error({"nope"}, Progress{}, {}, false), "unknown stage 'nope'");
  // With several processes the distributed stages come first.
  RunOptions ranks;
  ranks.dist.world_size = 2;
  EXPECT_EQ(error({"evaluate", "classify"}, Progress{}, ranks, false),
            "with several processes, stage classify must come before evaluate (pretrain and "
            "classify run on every rank, evaluate and export on rank 0 after them)");
  EXPECT_EQ(error({"evaluate", "classify"}, Progress{}, {}, false), "");
}

TEST(RunFolder, LockRefusesASecondHolderAndIsFreedWithIt) {
  TempDir dir;
  const RunFolder folder(dir.path());
  {
    RunLock lock(folder);
    try {
      RunLock second(folder);
      FAIL() << "expected the folder to be in use";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("run folder " + dir.path().string() +
                                           " is in use by another aefx run (process " +
                                           std::to_string(::getpid()) + ")"),
                std::string::npos)
          << e.what();
    }
  }
  RunLock again(folder);  // the first lock was released
}

TEST(RunFolder, SummariesReadBackWhatTheyWrote) {
  TempDir dir;
  const RunFolder folder(dir.path());
  EXPECT_FALSE(PretrainSummary::read(folder));
  PretrainSummary p;
  p.epochs = 2;
  p.val_mse = 0.125;
  p.val_psnr = std::numeric_limits<double>::infinity();  // written as null, read as NaN
  p.history = {{1, 0.5, 0.25, 6.0, 100.0, 1.5}, {2, 0.25, 0.125, 9.0, 110.0, 1.25}};
  p.write(folder);
  const auto q = PretrainSummary::read(folder);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->epochs, 2);
  EXPECT_EQ(q->val_mse, 0.125);
  EXPECT_TRUE(std::isnan(q->val_psnr));
  EXPECT_FALSE(q->images_per_second);
  ASSERT_EQ(q->history.size(), 2u);
  EXPECT_EQ(q->history[1].val_mse, 0.125);
  Progress g;
  g.completed = {"pretrain"};
  g.unfinished = "classify";
  g.write(folder);
  const auto h = Progress::read(folder);
  EXPECT_TRUE(h.exists);
  EXPECT_EQ(h.completed, std::vector<std::string>{"pretrain"});
  EXPECT_EQ(h.unfinished, "classify");
  EXPECT_EQ(h.stopped_by, "");
  std::ofstream(folder.classify_summary()) << "{ not json";
  try {
    ClassifySummary::read(folder);
    FAIL() << "expected a parse error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot parse " + folder.classify_summary().string()),
              std::string::npos)
        << e.what();
  }
}

/// A hook with state of its own: counts epochs, and the count survives a resume.
struct Counter : Hook {
  int64_t epochs = 0;
  void after_epoch(TrainState&) override { ++epochs; }
  void save_state(torch::serialize::OutputArchive& a) const override {
    a.write("test_counter", c10::IValue(epochs));
  }
  void load_state(torch::serialize::InputArchive& a) override {
    c10::IValue v;
    a.read("test_counter", v);
    epochs = v.toInt();
  }
};

TEST(Trainer, CheckpointsResumeTheModelTheOptimizerAndTheHooksExactly) {
  TempDir dir;
  auto train = [&](int64_t stop_after, bool resume, torch::nn::Linear& model, Counter& counter) {
    auto opt = make_optimizer(config::Optimizer::kAdamW, model->parameters(), 0.05, 0.01);
    Trainer t("test", 4, 3, single());
    auto c = std::shared_ptr<Counter>(&counter, [](Counter*) {});
    t.add_hook(c);
    CheckpointSpec spec{dir / "state.pt", "linear", "2x1", model.get(), opt.get(), torch::kCPU};
    t.enable_checkpoints(spec);
    int64_t steps = 0;
    return t.run(
        [&](TrainState&) {
          if (++steps > stop_after) util::set_interrupt_signal(SIGINT);
          auto x = torch::randn({8, 2});
          auto loss = (model->forward(x) - x.sum(1, true)).pow(2).mean();
          opt->zero_grad();
          loss.backward();
          opt->step();
          return StepOutput{loss.detach(), 8};
        },
        resume);
  };
  torch::manual_seed(1);
  torch::nn::Linear whole(2, 1);
  Counter whole_count;
  train(1000, false, whole, whole_count);

  torch::manual_seed(1);
  torch::nn::Linear part(2, 1);
  Counter first_count;
  EXPECT_THROW(train(5, false, part, first_count), util::Interrupted);
  util::set_interrupt_signal(0);
  EXPECT_EQ(first_count.epochs, 1);
  torch::manual_seed(99);  // a new process seeds afresh; the checkpoint restores the stream
  torch::nn::Linear resumed(2, 1);
  Counter resumed_count;
  train(1000, true, resumed, resumed_count);
  EXPECT_EQ(resumed_count.epochs, 4);
  EXPECT_TRUE(torch::equal(resumed->weight, whole->weight));
  EXPECT_TRUE(torch::equal(resumed->bias, whole->bias));
}

TEST(Hooks, BestStateKeepsTheBestEpochAndHistoryRecordsEach) {
  torch::nn::Linear model(2, 1);
  BestStateHook best(*model, "val_accuracy", torch::kCPU);
  HistoryHook history(
      "classify", [] { return 0.5; }, 0.0);
  TrainState s;
  s.epochs = 3;
  s.epoch_seconds = 1;
  s.samples_in_epoch = 10;
  torch::Tensor kept;
  for (double acc : {0.5, 0.75, 0.625}) {
    s.metrics = {{"val_accuracy", acc}, {"val_loss", 1 - acc}};
    {
      torch::NoGradGuard no_grad;
      model->weight.fill_(acc);
    }
    if (acc == 0.75) kept = model->weight.clone();
    best.after_epoch(s);
    history.after_epoch(s);
    ++s.epoch;
  }
  EXPECT_EQ(best.best_epoch(), 2);
  EXPECT_EQ(best.best(), 0.75);
  best.restore();
  EXPECT_TRUE(torch::equal(model->weight, kept));
  ASSERT_EQ(history.records().size(), 3u);
  EXPECT_EQ(history.records()[2].epoch, 3);
  EXPECT_EQ(history.records()[2].val_accuracy, 0.625);
  EXPECT_EQ(history.records()[2].lr, 0.5);
  EXPECT_EQ(history.records()[2].images_per_second, 10);
  EXPECT_TRUE(std::isnan(history.records()[2].val_mse));
}

// The head's standardisation: torch's mean and unbiased std in fp32, over more rows than one
// block; from bf16 codes, the statistics of the bf16 values themselves, not bf16-rounded ones.
TEST(HeadTrainer, ColumnStatisticsAndStandardisationKeepBf16CodesPrecise) {
  torch::manual_seed(0);
  // 600 rows of 4,096 values: two blocks of the 8 MB the statistics convert at a time.
  auto scale = torch::tensor({1.0, 10.0, 100.0, 0.01, 3.0, 0.0}).repeat({683}).narrow(0, 0, 4096);
  auto codes = torch::rand({600, 4096}) * scale + 7.0;
  auto [mean, std] = column_mean_std(codes);
  EXPECT_EQ(mean.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(mean, codes.mean(0), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(std, codes.std(0), 1e-4, 1e-6));
  EXPECT_EQ(std[5].item<float>(), 0.0f);  // a constant column
  const auto half = codes.to(torch::kBFloat16);
  auto [bmean, bstd] = column_mean_std(half);
  const auto exact = half.to(torch::kDouble);
  EXPECT_TRUE(torch::allclose(bmean.to(torch::kDouble), exact.mean(0), 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(bstd.to(torch::kDouble), exact.std(0), 1e-5, 1e-7));
  // bf16's own mean of 7.5-ish values is off by up to 2^-5; this one is not.
  EXPECT_GT((half.mean(0).to(torch::kDouble) - exact.mean(0)).abs().max().item<double>(),
            (bmean.to(torch::kDouble) - exact.mean(0)).abs().max().item<double>());
  EXPECT_TRUE(std::isnan(column_mean_std(codes.narrow(0, 0, 1)).second[0].item<float>()));
  // Standardised in place across blocks, each dtype kept: fp32 exactly as sub_/div_ give it,
  // bf16 as the fp32 result rounded once.
  const auto mean_ = codes.mean(0), std_ = codes.std(0).clamp_min(1e-6);
  auto a = codes.clone(), b = half.clone();
  standardize_in_place(a, mean_, std_);
  standardize_in_place(b, mean_, std_);
  EXPECT_TRUE(torch::equal(a, codes.sub(mean_).div(std_)));
  EXPECT_EQ(b.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(b, half.to(torch::kFloat).sub(mean_).div(std_).to(torch::kBFloat16)));
}

}  // namespace
}  // namespace aefx::engine
