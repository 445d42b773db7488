// aefx command line: a thin layer over aefx_core. Exit codes: 0 success, 2 usage or config
// error, 1 runtime error. Errors are printed as one line, without stack traces.
#include <torch/torch.h>

#include <array>
#include <cstring>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "aefx/bench/bench.h"
#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/engine/runner.h"
#include "aefx/models/torchscript.h"
#include "aefx/stages/stages.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/progress.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/report.h"

namespace {

constexpr const char* kUsage =
    R"(aefx: unsupervised image features from a frozen convolutional autoencoder

usage:
  aefx run CONFIG [--stages a,b,...] [--set key=value ...] [--resume|--restart]
           [--quiet|--verbose] [--progress auto|bar|lines|off]
  aefx launch --nproc N [--nnodes M --node-rank K --master-addr HOST --master-port P]
           CONFIG [run options]
  aefx config CONFIG [--set key=value ...] [--get key]
  aefx bench CONFIG [--set key=value ...] [--steps N] [--warmup N] [--pipeline]
  aefx predict --model classifier.pt IMAGE... [--top-k K] [--json]
  aefx evaluate --model classifier.pt --data DIR [--format cifar10-binary|image-folder|idx] [--json]
  aefx report RUN_DIR
  aefx runs [DIR]
  aefx info [--json]
  aefx --help | --version       (aefx COMMAND --help: the command's options and examples)

commands:
  run      run the config's stages (pretrain -> classify -> evaluate -> export) in its run
           folder, then write the folder's report.html; under torchrun's variables (RANK,
           WORLD_SIZE, MASTER_ADDR, MASTER_PORT) as one rank of a data-parallel group
  launch   start N ranks of `aefx run` on this machine (data-parallel pretrain and classify)
  config   print the resolved config (every key, after --set), or one key with --get
  bench    time the pipeline's pieces on the config's data and device; prints JSON
  predict  classify image files with an exported classifier.pt (no config or run folder needed)
  evaluate test accuracy of an exported classifier.pt on a data set
  report   (re)write a run folder's report.html from its files
  runs     list the run folders under DIR (default: models) with their stages and accuracy
  info     versions, CUDA / cuDNN, OpenCV, BLAS and threads of this build and machine

examples:
  aefx run configs/cifar10-cpu.yaml --set data.root=/data/cifar10
  aefx run configs/cifar10.yaml --stages classify,evaluate
  aefx run configs/cifar10.yaml --set pretrain.epochs=5 --set device=cuda
  aefx launch --nproc 2 configs/cifar10-cpu.yaml --set name=cifar10-2proc
  aefx config configs/cifar10.yaml --get data.root
  aefx bench configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --pipeline
  aefx predict --model models/cifar10/classifier.pt cat.png ship.jpg --top-k 3
  aefx evaluate --model models/cifar10/classifier.pt --data data/cifar10
  aefx report models/cifar10-cpu
  aefx runs
  aefx info

exit codes: 0 success, 2 usage or config error, 1 runtime error,
            130 / 143 stopped by SIGINT / SIGTERM (progress saved; continue with --resume)
)";

constexpr const char* kRunUsage = R"(usage: aefx run CONFIG [options]

Runs the stages listed in the config (or --stages) in the run folder output_dir/name.
Each stage reads what earlier stages wrote there, so stages can run alone.

options:
  --stages a,b,...   stages to run, from: pretrain classify evaluate export
  --set key=value    override any config key (validated like the file); repeatable
  --resume           continue the run folder's stopped run: completed stages are skipped, the
                     stopped stage continues from its last checkpoint (same epoch and step,
                     optimizer, LR schedule and RNG state); needs the same config
  --restart          start over although the run folder holds unfinished, resumable work
  --quiet            print warnings and errors only (no progress)
  --verbose          print debug lines too
  --progress MODE    auto (default): a bar redrawn in place when stderr is a terminal, else
                     a plain line every 15 s; bar; lines; off
  -h, --help         this text

Every line printed also goes to the run folder's log.txt, with the versions, the device and
the resolved config. Per epoch: metrics.jsonl and metrics.csv; pictures: curves.png,
reconstructions.png, confusion.png, latents.png; at the end: report.html (see README).

Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves the stage's progress and exits
with 130 or 143; a second Ctrl-C stops at once (the last saved progress is kept).

With torchrun's variables set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; LOCAL_RANK and
LOCAL_WORLD_SIZE optional), this process is one rank of a data-parallel group: rank 0 does
everything a single process does; the others train their share of pretrain and classify,
print only warnings and errors, and write nothing (see aefx launch --help).

examples:
  aefx run configs/cifar10-cpu.yaml
  aefx run configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --set pretrain.epochs=2
  aefx run configs/cifar10.yaml --stages classify,evaluate
  aefx run configs/cifar10-cpu.yaml --resume
  aefx run configs/cifar10-cpu.yaml --progress lines 2>&1 | tee run.log
)";

struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// Walks argv: -h/--help set `help`; every other argument goes to `on(arg, value)`, where
/// value() consumes the next argument as the flag's value. `on` returns false for an argument
/// it does not take, which is then a usage error.
using ArgHandler = std::function<bool(const std::string&, const std::function<std::string()>&)>;
void walk_args(const std::vector<std::string>& argv, bool& help, const ArgHandler& on) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argv.size()) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      help = true;
    } else if (!on(arg, value)) {
      throw UsageError(
          (!arg.empty() && arg[0] == '-' ? "unknown option '" : "unexpected argument '") + arg +
          "'");
    }
  }
}

struct Args {
  std::string config;
  std::vector<std::string> sets;
  std::vector<std::string> stages;
  std::string get;
  bool help = false;
};

/// `s` quoted for a POSIX shell when it holds anything but plain characters.
std::string shell_quote(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of(
                                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_./=:,+-") == std::string::npos;
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// The options of the commands that take a CONFIG: --set, --quiet/--verbose, optionally
/// --stages and --get, and whatever `extra` (when given) takes.
Args parse(const std::vector<std::string>& argv, bool allow_stages, bool allow_get,
           const ArgHandler& extra = nullptr) {
  Args a;
  walk_args(argv, a.help, [&](const std::string& arg, const std::function<std::string()>& value) {
    if (extra && extra(arg, value)) return true;
    if (arg == "--set") {
      a.sets.push_back(value());
    } else if (arg.rfind("--set=", 0) == 0) {
      a.sets.push_back(arg.substr(6));
    } else if (allow_stages && arg == "--stages") {
      a.stages = aefx::config::parse_stage_list(value());
    } else if (allow_get && arg == "--get") {
      a.get = value();
    } else if (arg == "--quiet") {
      aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
    } else if (arg == "--verbose") {
      aefx::util::set_log_level(aefx::util::LogLevel::kDebug);
    } else if (arg[0] != '-' && a.config.empty()) {
      a.config = arg;
    } else {
      return false;
    }
    return true;
  });
  if (!a.help && a.config.empty()) {
    throw UsageError("missing CONFIG (a YAML file, e.g. configs/cifar10.yaml)");
  }
  return a;
}

int cmd_run(const std::vector<std::string>& argv) {
  aefx::engine::RunOptions options;
  Args a = parse(argv, true, false,
                 [&](const std::string& arg, const std::function<std::string()>& value) {
                   if (arg == "--progress") {
                     const std::string v = value();
                     using aefx::util::ProgressMode;
                     const ProgressMode m = v == "auto"    ? ProgressMode::kAuto
                                            : v == "bar"   ? ProgressMode::kBar
                                            : v == "lines" ? ProgressMode::kLines
                                            : v == "off"   ? ProgressMode::kOff
                                                           : throw UsageError(
                                                                 "--progress expects auto, bar, "
                                                                   "lines or off, found '" +
                                                                 v + "'");
                     aefx::util::set_progress_mode(m);
                   } else if (arg == "--resume") {
                     options.resume = true;
                   } else if (arg == "--restart") {
                     options.restart = true;
                   } else {
                     return false;
                   }
                   return true;
                 });
  if (a.help) {
    std::cout << kRunUsage;
    return 0;
  }
  const auto cfg = aefx::config::load_config(a.config, a.sets);
  const auto stages = a.stages.empty() ? cfg.stages : a.stages;
  options.dist = aefx::dist::env_from(aefx::dist::environment_variables());
  const bool worker = options.dist.enabled && options.dist.rank != 0;
  if (worker) {
    // Rank 0 speaks for the group; the others print only warnings and errors.
    aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
    aefx::util::set_progress_mode(aefx::util::ProgressMode::kOff);
    aefx::util::set_log_prefix("rank " + std::to_string(options.dist.rank) + ": ");
  }
  aefx::util::install_signal_handlers();
  std::vector<std::pair<std::string, double>> times;
  try {
    times = aefx::engine::run_stages(cfg, stages, aefx::stages::builtin_stages(), options);
    if (worker) return 0;
  } catch (const aefx::util::Interrupted& e) {
    if (worker) {
      std::cerr << "aefx: " << aefx::util::log_prefix() << e.what() << std::endl;
      return 128 + e.signal();
    }
    std::string resume = "aefx run " + shell_quote(a.config);
    for (const auto& set : a.sets) resume += " --set " + shell_quote(set);
    if (!a.stages.empty()) {
      std::string list;
      for (const auto& s : a.stages) list += (list.empty() ? "" : ",") + s;
      resume += " --stages " + list;
    }
    if (options.dist.enabled)
      resume = "(the same launch command, e.g. aefx launch --nproc " +
               std::to_string(options.dist.world_size) + ") " + resume;
    std::cerr << "aefx: " << e.what() << ". Resume with: " << resume << " --resume" << std::endl;
    return 128 + e.signal();
  }
  double total = 0;
  std::string line;
  for (const auto& [name, sec] : times) {
    total += sec;
    line += aefx::util::strfmt(" %s %.1f s,", name.c_str(), sec);
  }
  const auto run_dir = aefx::engine::run_dir_for(cfg);
  aefx::util::set_log_file(run_dir / "log.txt");
  const auto report = aefx::viz::write_report(run_dir);
  if (!times.empty()) {
    aefx::util::log_info(aefx::util::strfmt("done in %.1f s (%s ) -> %s", total, line.c_str(),
                                            run_dir.string().c_str()));
  }
  aefx::util::log_info("report: " + report.string());
  aefx::util::set_log_file({});
  return 0;
}

constexpr const char* kLaunchUsage = R"(usage: aefx launch [options] CONFIG [run options]

Starts N processes of `aefx run CONFIG [run options]` on this machine as the ranks of one
data-parallel group, with torchrun's variables set (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). pretrain and classify train data-parallel: each
rank takes its share of every global batch (pretrain.batch_size and classify.batch_size are
global), gradients are averaged over the ranks after every step; rank 0 writes the run folder,
then runs evaluate and export alone. CPU threads default to the cores divided among the
processes (threads: 0); on CUDA each process takes cuda:LOCAL_RANK and NCCL.

options:
  --nproc N          processes on this machine (default 1)
  --nnodes M         machines (default 1); start `aefx launch` on each with the same options
                     but its own --node-rank
  --node-rank K      this machine's index, 0..M-1 (machine 0 holds rank 0 and the store)
  --master-addr HOST address of machine 0, reachable from all (default 127.0.0.1)
  --master-port P    a free TCP port on machine 0 (default: any free port; required when
                     --nnodes > 1)
  --grace SECONDS    after one rank fails, how long the others get to stop before they are
                     terminated (default 30)
  -h, --help         this text

Ctrl-C / SIGTERM is passed on to every rank (each finishes its step; rank 0 saves the
progress); continue with the same command and --resume (the same number of processes).
The exit status is 0 when every rank succeeded, else that of the first rank that failed.

examples:
  aefx launch --nproc 2 configs/cifar10-cpu.yaml --set name=cifar10-2proc
  aefx launch --nproc 2 configs/cifar10-cpu.yaml --set name=cifar10-2proc --resume
  # two machines, 4 GPUs each (run on each machine, K = 0 and 1):
  aefx launch --nproc 4 --nnodes 2 --node-rank K --master-addr 10.0.0.1 --master-port 29500 \
      configs/cifar10.yaml
)";

int cmd_launch(const std::vector<std::string>& argv) {
  aefx::dist::LaunchOptions o;
  std::vector<std::string> rest;
  auto number = [](const std::string& flag, const std::string& v, int lo) {
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < lo || x > 65535)
      throw UsageError(flag + " expects an integer >= " + std::to_string(lo) + ", found '" + v +
                       "'");
    return static_cast<int>(x);
  };
  size_t i = 0;
  for (; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argv.size()) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kLaunchUsage;
      return 0;
    } else if (arg == "--nproc" || arg == "--nproc-per-node") {
      o.nproc = number(arg, value(), 1);
    } else if (arg == "--nnodes") {
      o.nnodes = number(arg, value(), 1);
    } else if (arg == "--node-rank") {
      o.node_rank = number(arg, value(), 0);
    } else if (arg == "--master-addr") {
      o.master_addr = value();
    } else if (arg == "--master-port") {
      o.master_port = number(arg, value(), 1);
    } else if (arg == "--grace") {
      o.grace_seconds = number(arg, value(), 0);
    } else if (arg.rfind("-", 0) == 0) {
      throw UsageError("launch: unknown option '" + arg +
                       "' before CONFIG (try aefx launch --help)");
    } else {
      break;
    }
  }
  rest.assign(argv.begin() + static_cast<std::ptrdiff_t>(i), argv.end());
  if (rest.empty()) throw UsageError("launch: missing CONFIG (try aefx launch --help)");
  if (std::find(rest.begin(), rest.end(), "--quiet") != rest.end())
    aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
  // The config is checked once here, so that a typo is one message, not one per rank.
  aefx::config::load_config(rest[0]);
  return aefx::dist::launch(o, rest);
}

int cmd_config(const std::vector<std::string>& argv) {
  Args a = parse(argv, false, true);
  if (a.help) {
    std::cout << "usage: aefx config CONFIG [--set key=value ...] [--get key]\n\n"
                 "Prints the resolved config (every key, defaults filled in, --set applied) as\n"
                 "YAML, or one key's value with --get. Validates like `aefx run`.\n\n"
                 "examples:\n"
                 "  aefx config configs/cifar10-cpu.yaml\n"
                 "  aefx config configs/cifar10-cpu.yaml --set pretrain.epochs=3 --get "
                 "pretrain.epochs\n";
    return 0;
  }
  const auto cfg = aefx::config::load_config(a.config, a.sets);
  if (!a.get.empty()) {
    std::cout << aefx::config::get_value(cfg, a.get) << "\n";
  } else {
    std::cout << aefx::config::to_yaml(cfg);
  }
  return 0;
}

constexpr const char* kBenchUsage = R"(usage: aefx bench CONFIG [options]

Times short pieces of the real pipeline on the config's data and device and prints JSON:
pretrain images/s (median step after warm-up), FLOPs per image and achieved GFLOP/s, the
machine's matmul and convolution GFLOP/s through LibTorch, latent-code images/s, the time of
one head epoch, peak RSS; with --pipeline, the wall time of every stage of the config (run in
a scratch folder that is removed afterwards) and its test accuracy.
tools/bench_pytorch.py runs the same measurement in plain PyTorch and prints the ratios.

options:
  --set key=value    override any config key; repeatable
  --steps N          timed pretrain steps (default 30)
  --warmup N         untimed pretrain steps first (default 5)
  --pipeline         also run and time the whole pipeline
  --quiet|--verbose  log level (logs go to stderr, JSON to stdout)

examples:
  aefx bench configs/cifar10-cpu.yaml --set data.root=/data/cifar10
  aefx bench configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --pipeline
)";

int cmd_bench(const std::vector<std::string>& argv) {
  aefx::bench::BenchOptions options;
  auto count = [](const std::string& flag, const std::string& v, int64_t min) {
    int64_t n = -1;
    try {
      size_t used = 0;
      n = std::stoll(v, &used);
      if (used != v.size()) n = -1;
    } catch (const std::exception&) {
      n = -1;
    }
    if (n < min) {
      throw UsageError(flag + " expects an integer >= " + std::to_string(min) + ", found '" + v +
                       "'");
    }
    return n;
  };
  const Args a = parse(argv, false, false,
                       [&](const std::string& arg, const std::function<std::string()>& value) {
                         if (arg == "--steps") {
                           options.steps = count(arg, value(), 1);
                         } else if (arg == "--warmup") {
                           options.warmup = count(arg, value(), 0);
                         } else if (arg == "--pipeline") {
                           options.pipeline = true;
                         } else {
                           return false;
                         }
                         return true;
                       });
  if (a.help) {
    std::cout << kBenchUsage;
    return 0;
  }
  const auto cfg = aefx::config::load_config(a.config, a.sets);
  std::cout << aefx::util::dump_json(aefx::bench::run_bench(cfg, options)) << std::endl;
  return 0;
}

/// Options of the commands that work on an exported model.
struct ModelArgs {
  std::string model, data, format = "cifar10-binary";
  std::vector<std::string> images;
  int64_t top_k = 3;
  bool json = false, help = false;
};

ModelArgs parse_model_args(const std::vector<std::string>& argv) {
  ModelArgs a;
  walk_args(argv, a.help, [&](const std::string& arg, const std::function<std::string()>& value) {
    if (arg == "--model") {
      a.model = value();
    } else if (arg == "--data") {
      a.data = value();
    } else if (arg == "--format") {
      a.format = value();
      if (a.format != "cifar10-binary" && a.format != "image-folder" && a.format != "idx") {
        throw UsageError("--format expects cifar10-binary, image-folder or idx, found '" +
                         a.format + "'");
      }
    } else if (arg == "--top-k") {
      const std::string v = value();
      try {
        a.top_k = std::stoll(v);
      } catch (const std::exception&) {
        a.top_k = 0;
      }
      if (a.top_k < 1) throw UsageError("--top-k expects a positive integer, found '" + v + "'");
    } else if (arg == "--json") {
      a.json = true;
    } else if (arg[0] != '-') {
      a.images.push_back(arg);
    } else {
      return false;
    }
    return true;
  });
  if (!a.help && a.model.empty()) throw UsageError("missing --model (an exported classifier.pt)");
  return a;
}

int cmd_predict(const std::vector<std::string>& argv) {
  const ModelArgs a = parse_model_args(argv);
  if (a.help) {
    std::cout
        << "usage: aefx predict --model classifier.pt IMAGE... [--top-k K] [--json]\n\n"
           "Decodes each image (any size, colour or grey), converts it to the model's input\n"
           "(model.json: size, and channels: a colour image to grey for a grey model, a grey\n"
           "one to RGB for a colour model) and prints its top-k classes with probabilities.\n\n"
           "examples:\n"
           "  aefx predict --model models/cifar10-cpu/classifier.pt cat.png\n"
           "  aefx predict --model models/cifar10-cpu/classifier.pt *.jpg --top-k 1 --json\n";
    return 0;
  }
  if (a.images.empty()) throw UsageError("predict needs at least one image file");
  aefx::models::ExportedClassifier clf(a.model);
  const auto k = std::min<int64_t>(a.top_k, static_cast<int64_t>(clf.class_names().size()));
  aefx::util::Json out = aefx::util::Json::array();
  for (const auto& file : a.images) {
    auto x = aefx::data::to_channels(aefx::data::decode_image(file, clf.image_size()).unsqueeze(0),
                                     clf.channels())
                 .to(torch::kFloat)
                 .div_(255.0);
    auto probs = torch::softmax(clf.logits(x), 1)[0];
    auto [p, idx] = probs.topk(k);
    aefx::util::Json top = aefx::util::Json::array();
    std::string line = file + ":";
    for (int64_t j = 0; j < k; ++j) {
      const auto& name = clf.class_names()[static_cast<size_t>(idx[j].item<int64_t>())];
      top.push_back(
          aefx::util::Json::object({{"class", name}, {"probability", p[j].item<double>()}}));
      line +=
          aefx::util::strfmt(" %s %.3f%s", name.c_str(), p[j].item<double>(), j + 1 < k ? "," : "");
    }
    if (a.json) {
      out.push_back(aefx::util::Json::object({{"file", file}, {"top", top}}));
    } else {
      std::cout << line << "\n";
    }
  }
  if (a.json) std::cout << aefx::util::dump_json(out) << "\n";
  return 0;
}

int cmd_evaluate_model(const std::vector<std::string>& argv) {
  const ModelArgs a = parse_model_args(argv);
  if (a.help) {
    std::cout << "usage: aefx evaluate --model classifier.pt --data DIR "
                 "[--format cifar10-binary|image-folder|idx] [--json]\n\n"
                 "Test accuracy of an exported classifier on a data set's test split. IDX files\n"
                 "name no classes: their labels are read as the model's classes, in order.\n\n"
                 "examples:\n"
                 "  aefx evaluate --model models/cifar10-cpu/classifier.pt --data data/cifar10\n"
                 "  aefx evaluate --model models/cifar10-cpu/classifier.pt --data photos "
                 "--format image-folder --json\n";
    return 0;
  }
  if (a.data.empty()) throw UsageError("evaluate needs --data DIR (the data set's root)");
  if (!a.images.empty()) throw UsageError("unexpected argument '" + a.images[0] + "'");
  aefx::util::configure_threads(0);
  aefx::models::ExportedClassifier clf(a.model);
  aefx::config::DataConfig dc;
  dc.root = a.data;
  dc.format = aefx::config::from_name<aefx::config::DataFormat>(a.format).value();
  dc.image_size = clf.image_size();
  if (dc.format == aefx::config::DataFormat::kIdx) dc.class_names = clf.class_names();
  auto test = aefx::data::load_split(dc, aefx::data::Split::kTest, 0);
  // Colour data for a grey model, or grey data for a colour one: converted as predict does.
  test.images = aefx::data::to_channels(test.images, clf.channels());
  if (test.class_names != clf.class_names()) {
    throw std::runtime_error("the data set's classes differ from the model's (" +
                             std::to_string(test.class_names.size()) + " vs " +
                             std::to_string(clf.class_names().size()) + ")");
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < test.size(); i += 500) {
    const int64_t b = std::min<int64_t>(500, test.size() - i);
    auto x = test.images.narrow(0, i, b).to(torch::kFloat).div_(255.0);
    correct += (clf.logits(x).argmax(1) == test.labels.narrow(0, i, b)).sum().item<int64_t>();
  }
  const double acc = static_cast<double>(correct) / static_cast<double>(test.size());
  if (a.json) {
    std::cout << aefx::util::dump_json(aefx::util::Json::object(
                                           {{"test_accuracy", acc}, {"test_images", test.size()}}),
                                       -1)
              << "\n";
  } else {
    std::cout << aefx::util::strfmt("test accuracy %.4f on %lld images\n", acc,
                                    static_cast<long long>(test.size()));
  }
  return 0;
}

int cmd_report(const std::vector<std::string>& argv) {
  bool help = false;
  std::string dir;
  walk_args(argv, help, [&](const std::string& arg, const std::function<std::string()>&) {
    if (arg[0] == '-' || !dir.empty()) return false;
    dir = arg;
    return true;
  });
  if (help) {
    std::cout << "usage: aefx report RUN_DIR\n\n"
                 "(Re)writes RUN_DIR/report.html, one self-contained page (pictures embedded,\n"
                 "works offline): final metrics, per-class accuracy, pictures, per-epoch\n"
                 "figures, timings, environment and config. `aefx run` writes it at the end.\n\n"
                 "examples:\n"
                 "  aefx report models/cifar10-cpu\n"
                 "  chromium --headless --screenshot=report.png models/cifar10-cpu/report.html\n";
    return 0;
  }
  if (dir.empty()) throw UsageError("report needs RUN_DIR (a run folder, e.g. models/cifar10-cpu)");
  std::cout << aefx::viz::write_report(dir).string() << "\n";
  return 0;
}

int cmd_runs(const std::vector<std::string>& argv) {
  bool help = false, json = false;
  std::string dir;
  walk_args(argv, help, [&](const std::string& arg, const std::function<std::string()>&) {
    if (arg == "--json") {
      json = true;
    } else if (arg[0] == '-' || !dir.empty()) {
      return false;
    } else {
      dir = arg;
    }
    return true;
  });
  if (help) {
    std::cout << "usage: aefx runs [DIR] [--json]\n\n"
                 "Lists the run folders under DIR (default: models), newest first: name, last\n"
                 "update, stages completed (and the one that stopped) and test accuracy.\n\n"
                 "examples:\n"
                 "  aefx runs\n"
                 "  aefx runs /scratch/aefx-runs --json\n";
    return 0;
  }
  if (dir.empty()) dir = "models";
  const auto runs = aefx::engine::list_runs(dir);
  if (json) {
    aefx::util::Json out = aefx::util::Json::array();
    for (const auto& r : runs) {
      out.push_back(aefx::util::Json::object(
          {{"name", r.name},
           {"dir", r.dir.string()},
           {"date", r.date},
           {"completed", r.completed},
           {"unfinished",
            r.unfinished.empty() ? aefx::util::Json() : aefx::util::Json(r.unfinished)},
           {"stopped_by",
            r.stopped_by.empty() ? aefx::util::Json() : aefx::util::Json(r.stopped_by)},
           {"test_accuracy",
            r.test_accuracy >= 0 ? aefx::util::Json(r.test_accuracy) : aefx::util::Json()}}));
    }
    std::cout << aefx::util::dump_json(out) << "\n";
    return 0;
  }
  if (runs.empty()) {
    std::cout << "no run folders under " << dir << "\n";
    return 0;
  }
  std::vector<std::array<std::string, 4>> rows{{"NAME", "DATE", "STAGES", "TEST ACC"}};
  for (const auto& r : runs) {
    std::string stages;
    for (const auto& s : r.completed) stages += (stages.empty() ? "" : ",") + s;
    if (stages.empty()) stages = "-";
    if (!r.unfinished.empty()) {
      // No recorded cause: still running, or killed without a chance to record it.
      stages +=
          " (" + r.unfinished +
          (r.stopped_by.empty() ? " not finished" : " stopped by " + r.stopped_by.substr(0, 40)) +
          ")";
    }
    rows.push_back({r.name, r.date, stages,
                    r.test_accuracy >= 0 ? aefx::util::strfmt("%.2f%%", 100 * r.test_accuracy)
                                         : std::string("-")});
  }
  std::array<size_t, 4> width{};
  for (const auto& row : rows)
    for (size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], row[c].size());
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < 4; ++c) {
      const bool right = c == 3;
      const std::string pad(width[c] - row[c].size(), ' ');
      line += (c ? "  " : "") + (right ? pad + row[c] : row[c] + (c < 3 ? pad : ""));
    }
    std::cout << line << "\n";
  }
  return 0;
}

int cmd_info(const std::vector<std::string>& argv) {
  bool help = false, json = false;
  walk_args(argv, help, [&](const std::string& arg, const std::function<std::string()>&) {
    if (arg != "--json") return false;
    json = true;
    return true;
  });
  if (help) {
    std::cout << "usage: aefx info [--json]\n\n"
                 "Prints what this aefx runs with: its version and git commit, LibTorch, CUDA\n"
                 "and cuDNN (availability, GPUs), OpenCV (or built without), the BLAS library\n"
                 "loaded, threads (what a run with threads: 0 uses) and the machine.\n\n"
                 "examples:\n"
                 "  aefx info\n"
                 "  aefx info --json\n";
    return 0;
  }
  aefx::util::configure_threads(0);
  const auto info = aefx::util::environment_info();
  if (json) {
    aefx::util::Json out = aefx::util::Json::object();
    for (const auto& [k, v] : info) out[k] = v;
    std::cout << aefx::util::dump_json(out) << "\n";
    return 0;
  }
  size_t w = 0;
  for (const auto& kv : info) w = std::max(w, kv.first.size());
  for (const auto& [k, v] : info)
    std::cout << k << ":" << std::string(w + 2 - k.size() - 1, ' ') << v << "\n";
  return 0;
}

int dispatch(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "aefx " << AEFX_VERSION << " (LibTorch " << TORCH_VERSION_MAJOR << "."
              << TORCH_VERSION_MINOR << "." << TORCH_VERSION_PATCH << ")\n";
    return 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "run") return cmd_run(args);
  if (cmd == "launch") return cmd_launch(args);
  if (cmd == "config") return cmd_config(args);
  if (cmd == "bench") return cmd_bench(args);
  if (cmd == "predict") return cmd_predict(args);
  if (cmd == "evaluate") return cmd_evaluate_model(args);
  if (cmd == "report") return cmd_report(args);
  if (cmd == "runs") return cmd_runs(args);
  if (cmd == "info") return cmd_info(args);
  throw UsageError("unknown command '" + cmd + "' (try aefx --help)");
}

}  // namespace

int main(int argc, char** argv) {
  aefx::util::tune_allocator();
  try {
    return dispatch(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "aefx: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "aefx: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "aefx: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    // A rank other than 0 says which it is (PeerFailure messages already do).
    const std::string what = e.what();
    std::cerr << "aefx: " << (what.rfind("rank ", 0) == 0 ? "" : aefx::util::log_prefix()) << what
              << "\n";
    return 1;
  }
}
