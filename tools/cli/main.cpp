// aefx command line: a thin layer over aefx_core. The table below names every command; each
// lives in its own file (cli.h). Errors are printed as one line, without stack traces.
#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "cli.h"

namespace aefx::cli {
namespace {

const std::vector<Command>& commands() {
  static const std::vector<Command> table{
      {"run",
       "run CONFIG [--stages a,b,...] [--set key=value ...] [--resume|--restart]\n"
       "         [--quiet|--verbose] [--progress auto|bar|lines|off]",
       "run the config's stages (pretrain -> classify -> evaluate -> export) in its run\n"
       "folder, then write the folder's report.html; under torchrun's variables (RANK,\n"
       "WORLD_SIZE, MASTER_ADDR, MASTER_PORT) as one rank of a data-parallel group",
       setup_run},
      {"launch",
       "launch --nproc N [--nnodes M --node-rank K --master-addr HOST --master-port P]\n"
       "         CONFIG [run options]",
       "start N ranks of `aefx run` on this machine (data-parallel pretrain and classify)",
       setup_launch},
      {"config", "config CONFIG [--set key=value ...] [--get key]",
       "print the resolved config (every key, after --set), or one key with --get", setup_config},
      {"bench", "bench CONFIG [--set key=value ...] [--steps N] [--warmup N] [--pipeline]",
       "time the pipeline's pieces on the config's data and device; prints JSON", setup_bench},
      {"predict", "predict --model classifier.pt IMAGE... [--top-k K] [--json]",
       "classify image files with an exported classifier.pt (no config or run folder needed)",
       setup_predict},
      {"extract",
       "extract --model MODEL --out DIR (INPUT... | --data DIR [--format F] [--split S])\n"
       "         [--dtype float32|float16] [--batch N] [--device D] [--resume]",
       "write an exported encoder's codes for image files, folders or a data set to\n"
       "DIR/features.npy with DIR/index.csv and DIR/meta.json (resumable)",
       setup_extract},
      {"evaluate",
       "evaluate --model classifier.pt --data DIR [--format cifar10-binary|image-folder|idx]\n"
       "         [--batch N] [--json]",
       "test accuracy of an exported classifier.pt on a data set", setup_evaluate},
      {"report", "report RUN_DIR", "(re)write a run folder's report.html from its files",
       setup_report},
      {"runs", "runs [DIR] [--json]",
       "list the run folders under DIR (default: models) with their stages and accuracy",
       setup_runs},
      {"info", "info [--json]",
       "versions, CUDA / cuDNN, OpenCV, BLAS and threads of this build and machine", setup_info},
  };
  return table;
}

constexpr const char* kExamples = R"(examples:
  aefx run configs/cifar10-cpu.yaml --set data.root=/data/cifar10
  aefx run configs/cifar10.yaml --stages classify,evaluate
  aefx run configs/cifar10.yaml --set pretrain.epochs=5 --set device=cuda
  aefx launch --nproc 2 configs/cifar10-cpu.yaml --set name=cifar10-2proc
  aefx config configs/cifar10.yaml --get data.root
  aefx bench configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --pipeline
  aefx predict --model models/cifar10/classifier.pt cat.png ship.jpg --top-k 3
  aefx extract --model models/cifar10 photos/ --out feats
  aefx evaluate --model models/cifar10/classifier.pt --data data/cifar10
  aefx report models/cifar10-cpu
  aefx runs
  aefx info

exit codes: 0 success, 2 usage or config error, 1 runtime error,
            130 / 143 stopped by SIGINT / SIGTERM (progress saved; continue with --resume)
)";

/// `text` with every line after the first indented by `indent` spaces.
std::string indent_rest(std::string text, size_t indent) {
  for (size_t at = 0; (at = text.find('\n', at)) != std::string::npos; ++at)
    text.insert(++at, indent, ' ');
  return text;
}

/// `aefx --help`: the commands' synopses and summaries from the table, then examples.
std::string usage() {
  std::string out =
      "aefx: unsupervised image features from a frozen convolutional autoencoder\n\nusage:\n";
  for (const auto& c : commands()) out += "  aefx " + indent_rest(c.synopsis, 2) + "\n";
  out +=
      "  aefx --help | --version       (aefx COMMAND --help: the command's options and "
      "examples)\n\ncommands:\n";
  size_t width = 0;
  for (const auto& c : commands()) width = std::max(width, std::string(c.name).size());
  for (const auto& c : commands()) {
    const std::string name = c.name;
    out += "  " + name + std::string(width + 1 - name.size(), ' ') +
           indent_rest(c.summary, width + 3) + "\n";
  }
  return out + "\n" + kExamples;
}

/// CLI11's error as our one line: "--steps expects ..." and "--set needs a value".
std::string usage_message(const CLI::ParseError& e) {
  std::string what = e.what();
  const auto colon = what.find(": expects ");
  if (colon != std::string::npos) return what.erase(colon, 1);
  if (e.get_name() == "ArgumentMismatch" && what.find(" required ") != std::string::npos)
    return what.substr(0, what.find(':')) + " needs a value";
  return what;
}

/// Parses a command's arguments (argv[0] is the command's name) with its app and runs it.
int run_command(const Command& command, int argc, char** argv) {
  CLI::App app("", std::string("aefx ") + command.name);
  app.set_help_flag("-h,--help", "this text");
  // Arguments the command does not take are named below, in our words.
  app.allow_extras();
  const Action action = command.setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    throw UsageError(usage_message(e));
  }
  if (!app.get_prefix_command() && !app.remaining().empty()) {
    const std::string arg = app.remaining()[0];
    throw UsageError(
        (!arg.empty() && arg[0] == '-' ? "unknown option '" : "unexpected argument '") + arg + "'");
  }
  return action();
}

int dispatch(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << usage();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "aefx " << AEFX_VERSION << " (LibTorch " << TORCH_VERSION_MAJOR << "."
              << TORCH_VERSION_MINOR << "." << TORCH_VERSION_PATCH << ")\n";
    return 0;
  }
  for (const auto& c : commands()) {
    if (args[0] == c.name) return run_command(c, argc - 1, argv + 1);
  }
  throw UsageError("unknown command '" + args[0] + "' (try aefx --help)");
}

}  // namespace
}  // namespace aefx::cli

int main(int argc, char** argv) {
  aefx::util::tune_allocator();
  try {
    return aefx::cli::dispatch(argc, argv);
  } catch (const std::invalid_argument& e) {
    // Usage and config errors (UsageError is one).
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
