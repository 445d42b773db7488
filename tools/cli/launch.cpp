// aefx launch: N ranks of `aefx run CONFIG [run options]` on this machine.
#include <algorithm>
#include <memory>

#include "aefx/config/config.h"
#include "aefx/dist/dist.h"
#include "aefx/util/log.h"
#include "cli.h"

namespace aefx::cli {
namespace {

constexpr const char* kDescription =
    R"(Starts N processes of `aefx run CONFIG [run options]` on this machine as the ranks of one
data-parallel group, with torchrun's variables set (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). pretrain and classify train data-parallel: each
rank takes its share of every global batch (pretrain.batch_size and classify.batch_size are
global), gradients are averaged over the ranks after every step; rank 0 writes the run folder,
then runs evaluate and export alone. CPU threads default to the cores divided among the
processes (threads: 0); on CUDA each process takes cuda:LOCAL_RANK and NCCL.)";

constexpr const char* kFooter =
    R"(Ctrl-C / SIGTERM is passed on to every rank (each finishes its step; rank 0 saves the
progress); continue with the same command and --resume (the same number of processes).
The exit status is 0 when every rank succeeded, else that of the first rank that failed.

examples:
  aefx launch --nproc 2 configs/cifar10-cpu.yaml --set name=cifar10-2proc
  aefx launch --nproc 2 configs/cifar10-cpu.yaml --set name=cifar10-2proc --resume
  # two machines, 4 GPUs each (run on each machine, K = 0 and 1):
  aefx launch --nproc 4 --nnodes 2 --node-rank K --master-addr 10.0.0.1 --master-port 29500 \
      configs/cifar10.yaml
)";

constexpr int64_t kMaxCount = 65535;

int launch(const CLI::App& app, const dist::LaunchOptions& options) {
  // The launcher's options end at CONFIG: it and everything after it go to every rank.
  const std::vector<std::string> rest = app.remaining();
  if (!rest.empty() && rest[0].rfind("-", 0) == 0) {
    throw UsageError("launch: unknown option '" + rest[0] +
                     "' before CONFIG (try aefx launch --help)");
  }
  if (rest.empty()) throw UsageError("launch: missing CONFIG (try aefx launch --help)");
  if (std::find(rest.begin(), rest.end(), "--quiet") != rest.end())
    util::set_log_level(util::LogLevel::kQuiet);
  // The config is checked once here, so that a typo is one message, not one per rank.
  config::load_config(rest[0]);
  return dist::launch(options, rest);
}

}  // namespace

Action setup_launch(CLI::App& app) {
  auto o = std::make_shared<dist::LaunchOptions>();
  set_help(app, "[options] CONFIG [run options]", kDescription, kFooter);
  app.prefix_command();
  app.add_option("--nproc", o->nproc, "processes on this machine (default 1)")
      ->type_name("N")
      ->check(integer_at_least(1, kMaxCount));
  // torchrun's name for it, accepted and not listed.
  app.add_option("--nproc-per-node", o->nproc)->check(integer_at_least(1, kMaxCount));
  app.add_option("--nnodes", o->nnodes,
                 "machines (default 1); start `aefx launch` on each with the same options\n"
                 "but its own --node-rank")
      ->type_name("M")
      ->check(integer_at_least(1, kMaxCount));
  app.add_option("--node-rank", o->node_rank,
                 "this machine's index, 0..M-1 (machine 0 holds rank 0 and the store)")
      ->type_name("K")
      ->check(integer_at_least(0, kMaxCount));
  app.add_option("--master-addr", o->master_addr,
                 "address of machine 0, reachable from all (default 127.0.0.1)")
      ->type_name("HOST");
  app.add_option("--master-port", o->master_port,
                 "a free TCP port on machine 0 (default: any free port; required when\n"
                 "--nnodes > 1)")
      ->type_name("P")
      ->check(integer_at_least(1, kMaxCount));
  app.add_option("--grace", o->grace_seconds,
                 "after one rank fails, how long the others get to stop before they are\n"
                 "terminated (default 30)")
      ->type_name("SECONDS")
      ->check(integer_at_least(0, kMaxCount));
  return [&app, o] { return launch(app, *o); };
}

}  // namespace aefx::cli
