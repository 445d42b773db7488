#include "aefx/engine/runner.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <ctime>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "aefx/util/build_info.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::engine {

void StageRegistry::add(const std::string& name, StageFn fn, std::string state_file,
                        bool distributed) {
  stages_[name] = Entry{std::move(fn), std::move(state_file), distributed};
}

bool StageRegistry::contains(const std::string& name) const { return stages_.count(name) > 0; }

const StageFn& StageRegistry::get(const std::string& name) const {
  auto it = stages_.find(name);
  if (it == stages_.end()) throw std::invalid_argument("unknown stage '" + name + "'");
  return it->second.fn;
}

const std::string& StageRegistry::state_file(const std::string& name) const {
  get(name);
  return stages_.at(name).state_file;
}

bool StageRegistry::distributed(const std::string& name) const {
  get(name);
  return stages_.at(name).distributed;
}

namespace {

namespace fs = std::filesystem;

struct Progress {
  std::vector<std::string> completed;
  std::string unfinished;  ///< the stage that started and did not finish
  std::string stopped_by;  ///< "SIGINT", "SIGTERM" or the error
  int64_t world_size = 1;  ///< processes of the run that wrote it
  bool exists = false;
};

Progress read_progress(const fs::path& run_dir) {
  Progress p;
  const fs::path file = run_dir / kProgressFile;
  if (!fs::exists(file)) return p;
  try {
    const util::Json j = util::Json::parse(util::read_text(file));
    p.completed = j.at("completed").get<std::vector<std::string>>();
    if (j.contains("unfinished") && !j["unfinished"].is_null())
      p.unfinished = j["unfinished"].get<std::string>();
    if (j.contains("stopped_by") && !j["stopped_by"].is_null())
      p.stopped_by = j["stopped_by"].get<std::string>();
    if (j.contains("world_size")) p.world_size = j["world_size"].get<int64_t>();
  } catch (const util::Json::exception& e) {
    throw std::runtime_error("cannot read " + file.string() + " (" + e.what() +
                             "); move it away to start the run folder afresh");
  }
  p.exists = true;
  return p;
}

void write_progress(const fs::path& run_dir, const Progress& p) {
  util::write_json_file(
      run_dir / kProgressFile,
      util::Json{{"completed", p.completed},
                 {"unfinished", p.unfinished.empty() ? util::Json() : util::Json(p.unfinished)},
                 {"stopped_by", p.stopped_by.empty() ? util::Json() : util::Json(p.stopped_by)},
                 {"world_size", p.world_size}});
}

/// Drops `stage` and every stage after it in pipeline order: they are to be redone.
void drop_from(Progress& p, const std::string& stage) {
  const auto& order = config::known_stages();
  const auto pos = std::find(order.begin(), order.end(), stage) - order.begin();
  p.completed.erase(
      std::remove_if(p.completed.begin(), p.completed.end(),
                     [&](const std::string& s) {
                       return std::find(order.begin(), order.end(), s) - order.begin() >= pos;
                     }),
      p.completed.end());
}

/// --resume continues work only under the config that started it.
void check_same_config(const fs::path& run_dir, const config::Config& cfg) {
  const fs::path file = run_dir / "config.yaml";
  if (!fs::exists(file)) {
    throw std::invalid_argument("--resume: " + file.string() +
                                " is missing, so the earlier run's config is unknown");
  }
  const config::Config before = config::load_config(file.string());
  std::string diffs;
  for (const auto& d : config::differences(before, cfg, config::kResumeKeys))
    diffs += (diffs.empty() ? "" : ", ") + d.key + " (" + d.a + " -> " + d.b + ")";
  if (!diffs.empty()) {
    throw std::invalid_argument("--resume: the config differs from the one " + run_dir.string() +
                                " was started with: " + diffs +
                                "; resume with the same config, or start over with --restart");
  }
}

}  // namespace

std::vector<RunSummary> list_runs(const std::filesystem::path& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + " is not a folder");
  std::vector<RunSummary> runs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_directory() || !fs::exists(e.path() / "config.yaml")) continue;
    RunSummary r;
    r.name = e.path().filename().string();
    r.dir = e.path();
    for (const char* f : {"config.yaml", kProgressFile, "metrics.json", kRunFile}) {
      struct stat st {};
      if (::stat((e.path() / f).c_str(), &st) == 0)
        r.mtime = std::max<int64_t>(r.mtime, st.st_mtime);
    }
    const std::time_t t = static_cast<std::time_t>(r.mtime);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
    r.date = buf;
    try {
      const Progress p = read_progress(e.path());
      r.completed = p.completed;
      r.unfinished = p.unfinished;
      r.stopped_by = p.stopped_by;
    } catch (const std::exception&) {
      r.stopped_by = "unreadable progress.json";
    }
    try {
      if (fs::exists(e.path() / "metrics.json")) {
        const util::Json m = util::read_json_file(e.path() / "metrics.json");
        if (m.contains("test_accuracy") && m["test_accuracy"].is_number())
          r.test_accuracy = m["test_accuracy"].get<double>();
      }
    } catch (const std::runtime_error&) {
      // Listed without an accuracy.
    }
    runs.push_back(std::move(r));
  }
  std::sort(runs.begin(), runs.end(), [](const RunSummary& a, const RunSummary& b) {
    return a.mtime != b.mtime ? a.mtime > b.mtime : a.name < b.name;
  });
  return runs;
}

std::filesystem::path run_dir_for(const config::Config& cfg) {
  return std::filesystem::path(cfg.output_dir) / cfg.name;
}

namespace {

/// One stage of the plan rank 0 makes and the other ranks follow.
struct PlannedStage {
  std::string name;
  bool resume = false;
};

/// The plan and rank 0's resolved config, as rank 0 sends them to the other ranks.
constexpr const char* kConfigMark = "== config\n";

std::string encode_plan(const std::vector<PlannedStage>& plan, const config::Config& cfg) {
  std::string s;
  for (const auto& st : plan) s += st.name + (st.resume ? " 1\n" : " 0\n");
  return s + kConfigMark + config::to_yaml(cfg);
}

/// Every rank must train the same model the same way; what may differ between ranks (paths on
/// their machine, threads, device index, pictures) is left out.
void check_same_as_main(const config::Config& mine, const config::Config& main, int rank) {
  std::string diffs;
  for (const auto& d : config::differences(main, mine, config::kRankKeys))
    diffs += (diffs.empty() ? "" : ", ") + d.key + " (rank 0: " + d.a + ", here: " + d.b + ")";
  if (!diffs.empty())
    throw std::invalid_argument(util::strfmt("rank %d: the config differs from rank 0's: ", rank) +
                                diffs + "; start every rank with the same config and --set");
}

/// The non-zero ranks: run the distributed stages rank 0 planned, write nothing.
std::vector<std::pair<std::string, double>> run_as_worker(RunContext& ctx,
                                                          const StageRegistry& registry) {
  auto& group = *ctx.group;
  const std::string message = group.from_main("");
  if (message.rfind("!", 0) == 0)
    throw std::invalid_argument("rank 0 did not start the run: " + message.substr(1));
  const auto mark = message.find(kConfigMark);
  check_same_as_main(ctx.config,
                     config::parse_config(message.substr(mark + std::string(kConfigMark).size()),
                                          {}, "rank 0's config"),
                     group.rank());
  std::istringstream in(message.substr(0, mark));
  std::vector<std::pair<std::string, double>> times;
  for (std::string name; in >> name;) {
    int resume = 0;
    in >> resume;
    if (!registry.distributed(name)) continue;
    util::throw_if_interrupted("before stage " + name);
    group.barrier("starting stage " + name);
    ctx.resume = resume != 0;
    torch::manual_seed(dist::rank_seed(ctx.config.seed, group.rank()));
    const double t0 = util::now_seconds();
    registry.get(name)(ctx);
    util::release_free_memory();
    group.barrier("finishing stage " + name);
    times.emplace_back(name, util::now_seconds() - t0);
  }
  return times;
}

}  // namespace

std::vector<std::pair<std::string, double>> run_stages(const config::Config& cfg,
                                                       const std::vector<std::string>& stages,
                                                       const StageRegistry& registry,
                                                       const RunOptions& options) {
  for (const auto& s : stages) registry.get(s);  // unknown names fail before any work
  if (options.resume && options.restart)
    throw std::invalid_argument("--resume and --restart exclude each other");
  const dist::Env& env = options.dist;
  torch::Device device = util::resolve_device(cfg.device);
  // Each local rank its own GPU, as torchrun's LOCAL_RANK means.
  if (env.enabled && device.is_cuda() && (cfg.device == "cuda" || cfg.device == "auto"))
    device = util::resolve_device("cuda:" + std::to_string(env.local_rank));
  RunContext ctx{cfg, run_dir_for(cfg), device};
  // cuDNN autotune: every step has the same shapes, so the search pays for itself at once.
  if (ctx.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  // Processes on one machine share its cores.
  int64_t thread_request = cfg.threads;
  if (env.enabled && thread_request == 0)
    thread_request = std::max<int64_t>(
        1, static_cast<int64_t>(std::thread::hardware_concurrency()) / env.local_world_size);
  const int threads = util::configure_threads(thread_request);
  std::unique_ptr<dist::Group> group;
  if (env.enabled) {
    group = std::make_unique<dist::Group>(
        env, cfg.distributed.backend, ctx.device,
        std::chrono::milliseconds(static_cast<int64_t>(cfg.distributed.timeout * 1000)));
    ctx.group = group.get();
    if (!group->is_main()) return run_as_worker(ctx, registry);
  }
  Progress progress;
  std::vector<PlannedStage> plan;
  try {
    util::ensure_writable_dir(ctx.run_dir);
    // Temporary files of a process that was killed while writing (atomic_write's ".tmp.<pid>").
    for (const auto& e : fs::recursive_directory_iterator(ctx.run_dir)) {
      if (e.is_regular_file() && e.path().filename().string().find(".tmp.") != std::string::npos) {
        std::error_code ignored;
        fs::remove(e.path(), ignored);
      }
    }
    progress = read_progress(ctx.run_dir);
    const std::string resumable =
        progress.unfinished.empty() ? "" : registry.state_file(progress.unfinished);
    const bool has_unfinished_work = !resumable.empty() && fs::exists(ctx.run_dir / resumable);
    if (options.resume) {
      if (!progress.exists) {
        throw std::invalid_argument("--resume: " + ctx.run_dir.string() +
                                    " holds no earlier run to resume; run without --resume");
      }
      check_same_config(ctx.run_dir, cfg);
      // The saved state of a data-parallel stage continues only with as many ranks.
      if (progress.world_size != env.world_size && !progress.unfinished.empty() &&
          registry.distributed(progress.unfinished)) {
        throw std::invalid_argument(util::strfmt(
            "--resume: %s was run by %lld process(es), this run has %d; resume it with the "
            "same number (aefx launch --nproc N, or WORLD_SIZE)",
            ctx.run_dir.string().c_str(), static_cast<long long>(progress.world_size),
            env.world_size));
      }
    } else if (has_unfinished_work && !options.restart) {
      throw std::invalid_argument(
          "run folder " + ctx.run_dir.string() + " holds unfinished '" + progress.unfinished +
          "' work (stopped by " +
          (progress.stopped_by.empty() ? "an unknown cause" : progress.stopped_by) + ") saved in " +
          (ctx.run_dir / resumable).string() +
          ": continue it with --resume, or start over with --restart");
    }
    for (const auto& name : stages) {
      const bool done =
          options.resume && std::find(progress.completed.begin(), progress.completed.end(), name) !=
                                progress.completed.end();
      if (!done) plan.push_back({name, options.resume && name == progress.unfinished});
    }
    // The other ranks wait for the distributed stages; rank 0 runs the rest alone at the end.
    for (size_t i = 0; group && i + 1 < plan.size(); ++i) {
      if (!registry.distributed(plan[i].name) && registry.distributed(plan[i + 1].name))
        throw std::invalid_argument("with several processes, stage " + plan[i + 1].name +
                                    " must come before " + plan[i].name +
                                    " (pretrain and classify run on every rank, evaluate and "
                                    "export on rank 0 after them)");
    }
  } catch (const std::exception& e) {
    if (group) group->from_main(std::string("!") + e.what());
    throw;
  }
  if (group) group->from_main(encode_plan(plan, cfg));
  progress.world_size = env.world_size;
  util::atomic_write_text(ctx.run_dir / "config.yaml", config::to_yaml(cfg));
  util::set_log_file(ctx.run_dir / "log.txt");
  util::log_info(util::strfmt(
      "aefx %s, LibTorch %d.%d.%d, device %s, %d CPU thread(s), run folder %s%s", AEFX_VERSION,
      TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, ctx.device.str().c_str(),
      threads, ctx.run_dir.string().c_str(),
      group ? util::strfmt(", rank 0 of %d (%s)", group->size(), group->backend().c_str()).c_str()
            : ""));
  {
    // The log file alone gets the whole environment and the resolved config.
    std::string env_text = "== " + util::utc_now() + (options.resume ? " resumed" : " started") +
                           " on device " + ctx.device.str() + "\n";
    for (const auto& [key, value] : util::environment_info()) env_text += key + ": " + value + "\n";
    if (group)
      env_text +=
          util::strfmt("distributed: world size %d, backend %s, store %s:%d\n", group->size(),
                       group->backend().c_str(), env.master_addr.c_str(), env.master_port);
    util::log_to_file(env_text + "== config (resolved)\n" + config::to_yaml(cfg) +
                      "== end of config");
  }
  std::vector<std::pair<std::string, double>> times;
  const double t_start = util::now_seconds();
  std::string current;
  try {
    for (const auto& name : stages) {
      const auto planned = std::find_if(plan.begin(), plan.end(),
                                        [&](const PlannedStage& p) { return p.name == name; });
      if (planned == plan.end()) {
        util::log_info("== stage " + name + ": completed in an earlier run, skipped");
        continue;
      }
      util::throw_if_interrupted("before stage " + name);
      current = name;
      const bool distributed = group && registry.distributed(name);
      // A stage of rank 0 alone does not use the group (the other ranks are done).
      ctx.group = distributed ? group.get() : nullptr;
      // Alone (the other ranks wait or have finished), rank 0 may use every core.
      if (group && cfg.threads == 0) util::configure_threads(distributed ? thread_request : 0);
      if (distributed) group->barrier("starting stage " + name);
      // Only the stage that stopped continues from its saved state; any other state file is
      // left from an earlier run and would be stale.
      ctx.resume = planned->resume;
      const std::string& state = registry.state_file(name);
      if (!ctx.resume && !state.empty()) fs::remove(ctx.run_dir / state);
      drop_from(progress, name);
      progress.unfinished = name;
      progress.stopped_by.clear();
      write_progress(ctx.run_dir, progress);
      torch::manual_seed(static_cast<uint64_t>(cfg.seed));
      const double t0 = util::now_seconds();
      util::log_info("== stage " + name);
      registry.get(name)(ctx);
      util::release_free_memory();
      if (distributed) group->barrier("finishing stage " + name);
      times.emplace_back(name, util::now_seconds() - t0);
      progress.completed.push_back(name);
      progress.unfinished.clear();
      write_progress(ctx.run_dir, progress);
      current.clear();
      util::log_info(util::strfmt("== stage %s done in %.1f s", name.c_str(), times.back().second));
    }
  } catch (const util::Interrupted& e) {
    util::log_to_file(std::string("stopped: ") + e.what());
    util::set_log_file({});
    const std::string state = current.empty() ? "" : registry.state_file(current);
    if (!current.empty()) {
      progress.stopped_by = util::signal_name(e.signal());
      try {
        write_progress(ctx.run_dir, progress);
      } catch (const std::exception&) {
        // The stage's own state is saved; --resume finds it through the unfinished stage.
      }
    }
    throw util::Interrupted(
        e.signal(),
        std::string(e.what()) +
            (!state.empty() && fs::exists(ctx.run_dir / state)
                 ? "; its progress is saved in " + (ctx.run_dir / state).string()
                 : "; the stages finished before it are kept in " + ctx.run_dir.string()));
  } catch (const std::exception& e) {
    util::log_to_file(std::string("error: ") + e.what());
    util::set_log_file({});
    if (!current.empty()) {
      progress.stopped_by = std::string("error: ") + e.what();
      try {
        write_progress(ctx.run_dir, progress);
      } catch (const std::exception&) {
        // The original error (perhaps this very disk being full) is the one to report.
      }
    }
    throw;
  }
  util::set_log_file({});
  if (times.empty()) {
    util::log_info("nothing to do: every requested stage completed in an earlier run");
    return times;
  }
  util::Json stage_times = util::Json::object();
  for (const auto& [name, seconds] : times) stage_times[name] = seconds;
  const util::Json run = util::Json::object(
      {{"name", cfg.name},
       {"seed", cfg.seed},
       {"resumed", options.resume},
       {"stages", stage_times},
       {"wall_seconds", util::now_seconds() - t_start},
       {"peak_rss_bytes", util::peak_rss_bytes()},
       {"device", ctx.device.str()},
       {"threads", threads},
       {"world_size", env.world_size},
       {"backend", group ? util::Json(group->backend()) : util::Json()},
       {"aefx_version", AEFX_VERSION},
       {"git_commit", util::git_commit()},
       {"libtorch_version",
        util::strfmt("%d.%d.%d", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH)},
       {"machine", util::machine_info()}});
  util::write_json_file(ctx.run_dir / kRunFile, run);
  return times;
}

}  // namespace aefx::engine
