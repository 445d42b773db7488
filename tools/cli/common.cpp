// What the commands share: the help layout, value checks and the CONFIG arguments.
#include <memory>
#include <sstream>

#include "aefx/util/log.h"
#include "cli.h"

namespace aefx::cli {
namespace {

/// Options start at this column, descriptions at kDescriptionColumn (as the texts were written).
constexpr size_t kDescriptionColumn = 21;

/// Lays out a command's help from its usage, description, declared options and footer.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter(std::string usage, std::string description, std::string footer)
      : usage_(std::move(usage)),
        description_(std::move(description)),
        footer_(std::move(footer)) {}

  std::string make_help(const CLI::App* app, std::string, CLI::AppFormatMode) const override {
    std::ostringstream out;
    out << "usage: " << app->get_name() << " " << usage_ << "\n\n" << description_ << "\n";
    std::vector<const CLI::Option*> options;
    for (const CLI::Option* o : app->get_options()) {
      // An option without a description is an alias of a listed one (e.g. torchrun's name).
      if (o->nonpositional() && !o->get_description().empty() && o != app->get_help_ptr())
        options.push_back(o);
    }
    if (app->get_help_ptr()) options.push_back(app->get_help_ptr());
    out << "\noptions:\n";
    for (const CLI::Option* o : options) {
      std::string name = "  " + o->get_name(false, true);
      for (size_t at = 0; (at = name.find(',', at)) != std::string::npos; at += 2)
        name.replace(at, 1, ", ");
      if (o->get_type_size() != 0) name += " " + o->get_type_name();
      name += name.size() + 1 <= kDescriptionColumn
                  ? std::string(kDescriptionColumn - name.size(), ' ')
                  : std::string(" ");
      std::string text = o->get_description();
      for (size_t at = 0; (at = text.find('\n', at)) != std::string::npos; ++at)
        text.insert(++at, kDescriptionColumn, ' ');
      out << name << text << "\n";
    }
    if (!footer_.empty()) out << "\n" << footer_;
    return out.str();
  }

 private:
  std::string usage_, description_, footer_;
};

}  // namespace

void set_help(CLI::App& app, const std::string& usage, const std::string& description,
              const std::string& footer) {
  app.formatter(std::make_shared<HelpFormatter>(usage, description, footer));
}

CLI::Validator expects(const CLI::Validator& base, const std::string& expected) {
  // No description: the help shows the option's type name alone (e.g. "--steps N").
  return CLI::Validator(
      [base, expected](std::string& value) -> std::string {
        if (base(value).empty()) return "";
        return "expects " + expected + ", found '" + value + "'";
      },
      "");
}

CLI::Validator integer_at_least(int64_t lo, int64_t hi) {
  return expects(CLI::Range(lo, hi), "an integer >= " + std::to_string(lo));
}

void add_config_args(CLI::App& app, ConfigArgs& args) {
  app.add_option("CONFIG", args.config, "the config, a YAML file");
  app.add_option("--set", args.sets,
                 "override any config key (validated like the file); repeatable")
      ->type_name("key=value")
      ->allow_extra_args(false);
  app.add_flag("--quiet", args.quiet, "print warnings and errors only (no progress)");
  app.add_flag("--verbose", args.verbose, "print debug lines too");
}

void use_config_args(const ConfigArgs& args) {
  if (args.quiet && args.verbose) throw UsageError("--quiet and --verbose exclude each other");
  if (args.quiet) util::set_log_level(util::LogLevel::kQuiet);
  if (args.verbose) util::set_log_level(util::LogLevel::kDebug);
  if (args.config.empty()) {
    throw UsageError("missing CONFIG (a YAML file, e.g. configs/cifar10.yaml)");
  }
}

std::string shell_quote(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of(
                                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_./=:,+-") == std::string::npos;
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace aefx::cli
