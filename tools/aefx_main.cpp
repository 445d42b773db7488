// aefx command line: a thin layer over aefx_core. Exit codes: 0 success, 2 usage or config
// error, 1 runtime error. Errors are printed as one line, without stack traces.
#include <torch/torch.h>

#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/engine/runner.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace {

constexpr const char* kUsage =
    R"(aefx: unsupervised image features from a frozen convolutional autoencoder

usage:
  aefx run CONFIG [--stages a,b,...] [--set key=value ...] [--quiet|--verbose]
  aefx config CONFIG [--set key=value ...] [--get key]
  aefx --help | --version

commands:
  run      run the config's stages (pretrain -> classify -> evaluate) in its run folder
  config   print the resolved config (every key, after --set), or one key with --get

examples:
  aefx run configs/cifar10-cpu.yaml --set data.root=/data/cifar10
  aefx run configs/cifar10.yaml --stages classify,evaluate
  aefx run configs/cifar10.yaml --set pretrain.epochs=5 --set device=cuda
  aefx config configs/cifar10.yaml --get data.root

exit codes: 0 success, 2 usage or config error, 1 runtime error
)";

constexpr const char* kRunUsage = R"(usage: aefx run CONFIG [options]

Runs the stages listed in the config (or --stages) in the run folder output_dir/name.
Each stage reads what earlier stages wrote there, so stages can run alone.

options:
  --stages a,b,...   stages to run, from: pretrain classify evaluate
  --set key=value    override any config key (validated like the file); repeatable
  --quiet            print warnings and errors only
  --verbose          print debug lines too
  -h, --help         this text

examples:
  aefx run configs/cifar10-cpu.yaml
  aefx run configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --set pretrain.epochs=2
  aefx run configs/cifar10.yaml --stages classify,evaluate
)";

struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct Args {
  std::string config;
  std::vector<std::string> sets;
  std::vector<std::string> stages;
  std::string get;
  bool help = false;
};

Args parse(const std::vector<std::string>& argv, bool allow_stages, bool allow_get) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    auto value = [&](const std::string& flag) {
      if (i + 1 >= argv.size()) throw UsageError(flag + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      a.help = true;
    } else if (arg == "--set") {
      a.sets.push_back(value(arg));
    } else if (arg.rfind("--set=", 0) == 0) {
      a.sets.push_back(arg.substr(6));
    } else if (allow_stages && arg == "--stages") {
      a.stages = aefx::config::parse_stage_list(value(arg));
    } else if (allow_get && arg == "--get") {
      a.get = value(arg);
    } else if (arg == "--quiet") {
      aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
    } else if (arg == "--verbose") {
      aefx::util::set_log_level(aefx::util::LogLevel::kDebug);
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option '" + arg + "'");
    } else if (a.config.empty()) {
      a.config = arg;
    } else {
      throw UsageError("unexpected argument '" + arg + "'");
    }
  }
  if (!a.help && a.config.empty())
    throw UsageError("missing CONFIG (a YAML file, e.g. configs/cifar10.yaml)");
  return a;
}

int cmd_run(const std::vector<std::string>& argv) {
  Args a = parse(argv, true, false);
  if (a.help) {
    std::cout << kRunUsage;
    return 0;
  }
  const auto cfg = aefx::config::load_config(a.config, a.sets);
  const auto stages = a.stages.empty() ? cfg.stages : a.stages;
  const auto times = aefx::engine::run_stages(cfg, stages, aefx::stages::builtin_stages());
  double total = 0;
  std::string line;
  for (const auto& [name, sec] : times) {
    total += sec;
    line += aefx::util::strfmt(" %s %.1f s,", name.c_str(), sec);
  }
  aefx::util::log_info(aefx::util::strfmt("done in %.1f s (%s ) -> %s", total, line.c_str(),
                                          aefx::engine::run_dir_for(cfg).string().c_str()));
  return 0;
}

int cmd_config(const std::vector<std::string>& argv) {
  Args a = parse(argv, false, true);
  if (a.help) {
    std::cout << "usage: aefx config CONFIG [--set key=value ...] [--get key]\n";
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
  if (cmd == "config") return cmd_config(args);
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
    std::cerr << "aefx: " << e.what() << "\n";
    return 1;
  }
}
