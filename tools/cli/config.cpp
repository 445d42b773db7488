// aefx config CONFIG: the resolved config, or one key's value.
#include "aefx/config/config.h"

#include <iostream>
#include <memory>

#include "cli.h"

namespace aefx::cli {
namespace {

struct ConfigCommandArgs {
  ConfigArgs config;
  std::string get;
};

int print_config(const ConfigCommandArgs& a) {
  use_config_args(a.config);
  const auto cfg = config::load_config(a.config.config, a.config.sets);
  if (!a.get.empty()) {
    std::cout << config::get_value(cfg, a.get) << "\n";
  } else {
    std::cout << config::to_yaml(cfg);
  }
  return 0;
}

}  // namespace

Action setup_config(CLI::App& app) {
  auto a = std::make_shared<ConfigCommandArgs>();
  set_help(app, "CONFIG [--set key=value ...] [--get key]",
           "Prints the resolved config (every key, defaults filled in, --set applied) as\n"
           "YAML, or one key's value with --get. Validates like `aefx run`.",
           "examples:\n"
           "  aefx config configs/cifar10-cpu.yaml\n"
           "  aefx config configs/cifar10-cpu.yaml --set pretrain.epochs=3 --get "
           "pretrain.epochs\n");
  add_config_args(app, a->config);
  app.add_option("--get", a->get, "print only this key's value, e.g. data.root")->type_name("key");
  return [a] { return print_config(*a); };
}

}  // namespace aefx::cli
