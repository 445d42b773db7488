#pragma once
// The aefx command line: one file per command, each with a setup function that declares the
// command's arguments and help on its CLI11 app and returns what runs the command; main.cpp
// holds the table of commands. Exit codes: 0 success, 2 usage or config error, 1 runtime
// error, 128 + N stopped by signal N.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace aefx::cli {

/// A command line the command cannot take: main prints it as one line and exits with 2.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// Runs a command once its app has parsed the command line; returns the exit status.
using Action = std::function<int()>;

/// Declares a command's arguments and help on `app` (named "aefx NAME") and returns its action.
using Setup = Action (*)(CLI::App& app);

/// One command: its name, its synopsis in the top-level usage (after "aefx "; continuation
/// lines indented), its summary in the command list and its setup.
struct Command {
  const char* name;
  const char* synopsis;
  const char* summary;
  Setup setup;
};

Action setup_run(CLI::App& app);
Action setup_launch(CLI::App& app);
Action setup_config(CLI::App& app);
Action setup_bench(CLI::App& app);
Action setup_predict(CLI::App& app);
Action setup_extract(CLI::App& app);
Action setup_evaluate(CLI::App& app);
Action setup_report(CLI::App& app);
Action setup_runs(CLI::App& app);
Action setup_info(CLI::App& app);

/// The text `aefx NAME --help` prints: "usage: aefx NAME " + usage, the description, the
/// options declared on `app` (a description's further lines indented under its first), then
/// the footer (notes, then "examples:" and example lines).
void set_help(CLI::App& app, const std::string& usage, const std::string& description,
              const std::string& footer);

/// A check that passes what `base` passes and otherwise says "expects EXPECTED, found 'VALUE'";
/// the error line puts the option's name in front.
CLI::Validator expects(const CLI::Validator& base, const std::string& expected);

/// An integer from `lo` to `hi` (CLI::Range), refused as "expects an integer >= lo".
CLI::Validator integer_at_least(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max());

/// The arguments of the commands that read a CONFIG.
struct ConfigArgs {
  std::string config;
  std::vector<std::string> sets;
  bool quiet = false, verbose = false;
};

/// Declares CONFIG, --set (repeatable), --quiet and --verbose.
void add_config_args(CLI::App& app, ConfigArgs& args);

/// Applies --quiet or --verbose to the log level; throws UsageError without a CONFIG.
void use_config_args(const ConfigArgs& args);

/// `s` quoted for a POSIX shell when it holds anything but plain characters.
std::string shell_quote(const std::string& s);

}  // namespace aefx::cli
