// aefx runs [DIR]: the run folders under DIR with their stages and accuracy.
#include <algorithm>
#include <array>
#include <iostream>
#include <memory>

#include "aefx/engine/runner.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "cli.h"

namespace aefx::cli {
namespace {

struct RunsArgs {
  std::string dir = "models";
  bool json = false;
};

int list_runs(const RunsArgs& a) {
  const auto runs = engine::list_runs(a.dir);
  if (a.json) {
    util::Json out = util::Json::array();
    for (const auto& r : runs) {
      out.push_back(util::Json::object(
          {{"name", r.name},
           {"dir", r.dir.string()},
           {"date", r.date},
           {"completed", r.completed},
           {"unfinished", r.unfinished.empty() ? util::Json() : util::Json(r.unfinished)},
           {"stopped_by", r.stopped_by.empty() ? util::Json() : util::Json(r.stopped_by)},
           {"test_accuracy", r.test_accuracy >= 0 ? util::Json(r.test_accuracy) : util::Json()}}));
    }
    std::cout << util::dump_json(out) << "\n";
    return 0;
  }
  if (runs.empty()) {
    std::cout << "no run folders under " << a.dir << "\n";
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
    rows.push_back(
        {r.name, r.date, stages,
         r.test_accuracy >= 0 ? util::strfmt("%.2f%%", 100 * r.test_accuracy) : std::string("-")});
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

}  // namespace

Action setup_runs(CLI::App& app) {
  auto a = std::make_shared<RunsArgs>();
  set_help(app, "[DIR] [--json]",
           "Lists the run folders under DIR (default: models), newest first: name, last\n"
           "update, stages completed (and the one that stopped) and test accuracy.",
           "examples:\n"
           "  aefx runs\n"
           "  aefx runs /scratch/aefx-runs --json\n");
  app.add_option("DIR", a->dir, "where the run folders are (default: models)");
  app.add_flag("--json", a->json, "print a JSON array, one object per run folder");
  return [a] { return list_runs(*a); };
}

}  // namespace aefx::cli
