// aefx report RUN_DIR: (re)writes a run folder's report.html.
#include "aefx/viz/report.h"

#include <iostream>
#include <memory>

#include "cli.h"

namespace aefx::cli {

Action setup_report(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  set_help(app, "RUN_DIR",
           "(Re)writes RUN_DIR/report.html, one self-contained page (pictures embedded,\n"
           "works offline): final metrics, per-class accuracy, pictures, per-epoch\n"
           "figures, timings, environment and config. `aefx run` writes it at the end.",
           "examples:\n"
           "  aefx report models/cifar10-cpu\n"
           "  chromium --headless --screenshot=report.png models/cifar10-cpu/report.html\n");
  app.add_option("RUN_DIR", *dir, "a run folder");
  return [dir] {
    if (dir->empty()) {
      throw UsageError("report needs RUN_DIR (a run folder, e.g. models/cifar10-cpu)");
    }
    std::cout << viz::write_report(*dir).string() << "\n";
    return 0;
  };
}

}  // namespace aefx::cli
