#include "aefx/engine/runner.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "aefx/engine/precision.h"
#include "aefx/util/fs.h"
#include "aefx/util/log.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"

namespace aefx::engine {
namespace fs = std::filesystem;

void StageRegistry::add(const std::string& name, StageFn fn, RunFile state_file, bool distributed) {
  stages_[name] = Entry{std::move(fn), state_file, distributed};
}

bool StageRegistry::contains(const std::string& name) const { return stages_.count(name) > 0; }

const StageRegistry::Entry& StageRegistry::entry(const std::string& name) const {
  auto it = stages_.find(name);
  if (it == stages_.end()) throw std::invalid_argument("unknown stage '" + name + "'");
  return it->second;
}

const StageFn& StageRegistry::get(const std::string& name) const { return entry(name).fn; }

RunFile StageRegistry::state_file(const std::string& name) const { return entry(name).state_file; }

bool StageRegistry::distributed(const std::string& name) const { return entry(name).distributed; }

std::vector<PlannedStage> plan_stages(const RunFolder& folder,
                                      const std::vector<std::string>& requested,
                                      const Progress& progress, const RunOptions& options,
                                      const StageRegistry& registry,
                                      const std::function<bool(RunFile)>& has_state) {
  for (const auto& s : requested) registry.get(s);  // unknown names fail before any work
  if (options.resume && options.restart)
    throw std::invalid_argument("--resume and --restart exclude each other");
  const RunFile resumable =
      progress.unfinished.empty() ? nullptr : registry.state_file(progress.unfinished);
  const int world_size = options.dist.world_size;
  if (options.resume) {
    if (!progress.exists) {
      throw std::invalid_argument("--resume: " + folder.dir().string() +
                                  " holds no earlier run to resume; run without --resume");
    }
    // The saved state of a data-parallel stage continues only with as many ranks.
    if (progress.world_size != world_size && !progress.unfinished.empty() &&
        registry.distributed(progress.unfinished)) {
      throw std::invalid_argument(util::strfmt(
          "--resume: %s was run by %lld process(es), this run has %d; resume it with the "
          "same number (aefx launch --nproc N, or WORLD_SIZE)",
          folder.dir().string().c_str(), static_cast<long long>(progress.world_size), world_size));
    }
  } else if (resumable && has_state(resumable) && !options.restart) {
    throw std::invalid_argument(
        "run folder " + folder.dir().string() + " holds unfinished '" + progress.unfinished +
        "' work (stopped by " +
        (progress.stopped_by.empty() ? "an unknown cause" : progress.stopped_by) + ") saved in " +
        (folder.*resumable)().string() +
        ": continue it with --resume, or start over with --restart");
  }
  std::vector<PlannedStage> plan;
  for (const auto& name : requested) {
    const bool done =
        options.resume && std::find(progress.completed.begin(), progress.completed.end(), name) !=
                              progress.completed.end();
    const bool resume = options.resume && name == progress.unfinished;
    plan.push_back({name, done     ? StageAction::kSkip
                          : resume ? StageAction::kResume
                                   : StageAction::kRun});
  }
  // The other ranks wait for the distributed stages; rank 0 runs the rest alone at the end.
  if (world_size > 1) {
    const PlannedStage* previous = nullptr;
    for (const auto& p : plan) {
      if (p.action == StageAction::kSkip) continue;
      if (previous && !registry.distributed(previous->name) && registry.distributed(p.name))
        throw std::invalid_argument("with several processes, stage " + p.name +
                                    " must come before " + previous->name +
                                    " (pretrain and classify run on every rank, evaluate and "
                                    "export on rank 0 after them)");
      previous = &p;
    }
  }
  return plan;
}

namespace {

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
void check_same_config(const RunFolder& folder, const config::Config& cfg) {
  if (!fs::exists(folder.config())) {
    throw std::invalid_argument("--resume: " + folder.config().string() +
                                " is missing, so the earlier run's config is unknown");
  }
  const config::Config before = config::load_config(folder.config().string());
  std::string diffs;
  for (const auto& d : config::differences(before, cfg, config::kResumeKeys))
    diffs += (diffs.empty() ? "" : ", ") + d.key + " (" + d.a + " -> " + d.b + ")";
  if (!diffs.empty()) {
    throw std::invalid_argument("--resume: the config differs from the one " +
                                folder.dir().string() + " was started with: " + diffs +
                                "; resume with the same config, or start over with --restart");
  }
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

/// The plan and rank 0's resolved config, as rank 0 sends them to the other ranks.
constexpr const char* kConfigMark = "== config\n";

std::string encode_plan(const std::vector<PlannedStage>& plan, const config::Config& cfg) {
  std::string s;
  for (const auto& st : plan) {
    if (st.action != StageAction::kSkip)
      s += st.name + (st.action == StageAction::kResume ? " 1\n" : " 0\n");
  }
  return s + kConfigMark + config::to_yaml(cfg);
}

/// Where a run computes: the device (each local rank its own GPU, as torchrun's LOCAL_RANK
/// means) and the CPU threads (the processes of one machine share its cores).
struct Compute {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat;  ///< what `precision` resolves to on the device
  int64_t thread_request = 0;               ///< what the distributed stages use (0: every core)
  int threads = 0;                          ///< what configure_threads gave
};

Compute setup_compute(const config::Config& cfg, const dist::Env& env) {
  Compute c;
  c.device = util::resolve_device(cfg.device);
  if (env.enabled && c.device.is_cuda() && (cfg.device == "cuda" || cfg.device == "auto"))
    c.device = util::resolve_device("cuda:" + std::to_string(env.local_rank));
  // cuDNN autotune: every step has the same shapes, so the search pays for itself at once.
  if (c.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  c.dtype = compute_dtype(cfg.precision, c.device);
  c.thread_request = cfg.threads;
  if (env.enabled && c.thread_request == 0)
    c.thread_request = std::max<int64_t>(
        1, static_cast<int64_t>(std::thread::hardware_concurrency()) / env.local_world_size);
  c.threads = util::configure_threads(c.thread_request);
  return c;
}

/// The non-zero ranks: run the distributed stages rank 0 planned, write nothing.
std::vector<std::pair<std::string, double>> run_as_worker(const config::Config& cfg,
                                                          const Compute& compute,
                                                          dist::Group& group,
                                                          const StageRegistry& registry) {
  const std::string message = group.from_main("");
  if (message.rfind("!", 0) == 0)
    throw std::invalid_argument("rank 0 did not start the run: " + message.substr(1));
  const auto mark = message.find(kConfigMark);
  check_same_as_main(cfg,
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
    RunContext ctx{cfg, RunFolder(run_dir_for(cfg)), compute.device, group, resume != 0};
    torch::manual_seed(dist::rank_seed(cfg.seed, group.rank()));
    const double t0 = util::now_seconds();
    registry.get(name)(ctx);
    util::release_free_memory();
    group.barrier("finishing stage " + name);
    times.emplace_back(name, util::now_seconds() - t0);
  }
  return times;
}

/// config.yaml, and log.txt from here on: the log file alone gets the whole environment and the
/// resolved config.
void begin_log(const RunFolder& folder, const config::Config& cfg, const Compute& compute,
               const dist::Group& group, const RunOptions& options) {
  util::atomic_write_text(folder.config(), config::to_yaml(cfg));
  util::set_log_file(folder.log());
  const bool several = options.dist.enabled;
  util::log_info(util::strfmt(
      "aefx %s, LibTorch %d.%d.%d, device %s, compute %s (precision: %s), %d CPU thread(s), run "
      "folder %s%s",
      AEFX_VERSION, TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH,
      compute.device.str().c_str(), util::precision_name(compute.dtype),
      config::name_of(cfg.precision), compute.threads, folder.dir().string().c_str(),
      several ? util::strfmt(", rank 0 of %d (%s)", group.size(), group.backend().c_str()).c_str()
              : ""));
  std::string env_text = "== " + util::utc_now() + (options.resume ? " resumed" : " started") +
                         " on device " + compute.device.str() + "\n";
  for (const auto& [key, value] : util::environment_info()) env_text += key + ": " + value + "\n";
  if (several)
    env_text += util::strfmt("distributed: world size %d, backend %s, store %s:%d\n", group.size(),
                             group.backend().c_str(), options.dist.master_addr.c_str(),
                             options.dist.master_port);
  util::log_to_file(env_text + "== config (resolved)\n" + config::to_yaml(cfg) +
                    "== end of config");
}

/// Rank 0: runs the plan, keeping progress.json up to date; a signal or an error is recorded
/// there (and in the log) before it propagates.
std::vector<std::pair<std::string, double>> execute(
    const config::Config& cfg, const RunFolder& folder, const std::vector<PlannedStage>& plan,
    Progress& progress, const Compute& compute, dist::Group& group, const StageRegistry& registry,
    const RunOptions& options) {
  std::vector<std::pair<std::string, double>> times;
  dist::Group alone;  // the stages of rank 0 alone (the other ranks are done)
  std::string current;
  try {
    for (const auto& planned : plan) {
      const auto& name = planned.name;
      if (planned.action == StageAction::kSkip) {
        util::log_info("== stage " + name + ": completed in an earlier run, skipped");
        continue;
      }
      util::throw_if_interrupted("before stage " + name);
      current = name;
      const bool distributed = registry.distributed(name);
      // Alone (the other ranks wait or have finished), rank 0 may use every core.
      if (options.dist.enabled && cfg.threads == 0)
        util::configure_threads(distributed ? compute.thread_request : 0);
      dist::Group& stage_group = distributed ? group : alone;
      stage_group.barrier("starting stage " + name);
      const bool resume = planned.action == StageAction::kResume;
      // Only the stage that stopped continues from its saved state; any other state file is
      // left from an earlier run and would be stale.
      const RunFile state = registry.state_file(name);
      if (!resume && state) fs::remove((folder.*state)());
      drop_from(progress, name);
      progress.unfinished = name;
      progress.stopped_by.clear();
      progress.write(folder);
      torch::manual_seed(static_cast<uint64_t>(cfg.seed));
      const double t0 = util::now_seconds();
      util::log_info("== stage " + name);
      RunContext ctx{cfg, folder, compute.device, stage_group, resume};
      registry.get(name)(ctx);
      util::release_free_memory();
      stage_group.barrier("finishing stage " + name);
      times.emplace_back(name, util::now_seconds() - t0);
      progress.completed.push_back(name);
      progress.unfinished.clear();
      progress.write(folder);
      current.clear();
      util::log_info(util::strfmt("== stage %s done in %.1f s", name.c_str(), times.back().second));
    }
  } catch (const util::Interrupted& e) {
    util::log_to_file(std::string("stopped: ") + e.what());
    util::set_log_file({});
    const RunFile state = current.empty() ? nullptr : registry.state_file(current);
    if (!current.empty()) {
      progress.stopped_by = util::signal_name(e.signal());
      try {
        progress.write(folder);
      } catch (const std::exception&) {
        // The stage's own state is saved; --resume finds it through the unfinished stage.
      }
    }
    throw util::Interrupted(
        e.signal(),
        std::string(e.what()) +
            (state && fs::exists((folder.*state)())
                 ? "; its progress is saved in " + (folder.*state)().string()
                 : "; the stages finished before it are kept in " + folder.dir().string()));
  } catch (const std::exception& e) {
    util::log_to_file(std::string("error: ") + e.what());
    util::set_log_file({});
    if (!current.empty()) {
      progress.stopped_by = std::string("error: ") + e.what();
      try {
        progress.write(folder);
      } catch (const std::exception&) {
        // The original error (perhaps this very disk being full) is the one to report.
      }
    }
    throw;
  }
  util::set_log_file({});
  return times;
}

}  // namespace

torch::ScalarType RunContext::compute_dtype() const {
  return engine::compute_dtype(config.precision, device);
}

std::vector<RunSummary> list_runs(const std::filesystem::path& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + " is not a folder");
  std::vector<RunSummary> runs;
  for (const auto& e : fs::directory_iterator(dir)) {
    const RunFolder folder(e.path());
    if (!e.is_directory() || !fs::exists(folder.config())) continue;
    RunSummary r;
    r.name = e.path().filename().string();
    r.dir = e.path();
    for (const auto& f :
         {folder.config(), folder.progress(), folder.metrics(), folder.run_record()}) {
      struct stat st {};
      if (::stat(f.c_str(), &st) == 0) r.mtime = std::max<int64_t>(r.mtime, st.st_mtime);
    }
    const std::time_t t = static_cast<std::time_t>(r.mtime);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
    r.date = buf;
    try {
      const Progress p = Progress::read(folder);
      r.completed = p.completed;
      r.unfinished = p.unfinished;
      r.stopped_by = p.stopped_by;
    } catch (const std::exception&) {
      r.stopped_by = "unreadable progress.json";
    }
    try {
      if (const auto m = Metrics::read(folder); m && std::isfinite(m->test_accuracy))
        r.test_accuracy = m->test_accuracy;
    } catch (const std::exception&) {
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

std::vector<std::pair<std::string, double>> run_stages(const config::Config& cfg,
                                                       const std::vector<std::string>& stages,
                                                       const StageRegistry& registry,
                                                       const RunOptions& options) {
  // As plan_stages would say, but before a group forms (a rank that stops then leaves the others
  // waiting for it until distributed.timeout).
  for (const auto& s : stages) registry.get(s);
  if (options.resume && options.restart)
    throw std::invalid_argument("--resume and --restart exclude each other");
  const Compute compute = setup_compute(cfg, options.dist);
  auto group =
      options.dist.enabled
          ? std::make_unique<dist::Group>(
                options.dist, cfg.distributed.backend, compute.device,
                std::chrono::milliseconds(static_cast<int64_t>(cfg.distributed.timeout * 1000)))
          : std::make_unique<dist::Group>();
  if (!group->is_main()) return run_as_worker(cfg, compute, *group, registry);

  const RunFolder folder(run_dir_for(cfg));
  Progress progress;
  std::vector<PlannedStage> plan;
  std::unique_ptr<RunLock> lock;
  try {
    util::ensure_writable_dir(folder.dir());
    lock = std::make_unique<RunLock>(folder);
    folder.sweep_temporary_files();
    progress = Progress::read(folder);
    if (options.resume && progress.exists) check_same_config(folder, cfg);
    plan = plan_stages(folder, stages, progress, options, registry,
                       [&](RunFile f) { return fs::exists((folder.*f)()); });
  } catch (const std::exception& e) {
    group->from_main(std::string("!") + e.what());
    throw;
  }
  group->from_main(encode_plan(plan, cfg));
  progress.world_size = options.dist.world_size;
  begin_log(folder, cfg, compute, *group, options);
  const double t_start = util::now_seconds();
  const auto times = execute(cfg, folder, plan, progress, compute, *group, registry, options);
  if (times.empty()) {
    util::log_info("nothing to do: every requested stage completed in an earlier run");
    if (options.finish) options.finish(folder, times);
    return times;
  }
  RunRecord record;
  record.name = cfg.name;
  record.seed = cfg.seed;
  record.resumed = options.resume;
  record.stage_seconds = times;
  record.wall_seconds = util::now_seconds() - t_start;
  record.peak_rss_bytes = util::peak_rss_bytes();
  record.device = compute.device.str();
  record.precision = util::precision_name(compute.dtype);
  record.threads = compute.threads;
  record.world_size = options.dist.world_size;
  if (options.dist.enabled) record.backend = group->backend();
  record.write(folder);
  if (options.finish) options.finish(folder, times);
  return times;
}

}  // namespace aefx::engine
