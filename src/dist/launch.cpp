// `aefx launch`: starts the local ranks of a group, like torchrun's --nproc-per-node.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "aefx/dist/dist.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::dist {
namespace {

volatile sig_atomic_t g_forward_signal = 0;

void remember_signal(int sig) { g_forward_signal = sig; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return util::strfmt("was killed by signal %d (%s)", WTERMSIG(status),
                        strsignal(WTERMSIG(status)));
  return "stopped";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string self_executable() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw std::runtime_error("launch: cannot find this program's path (/proc/self/exe)");
  return std::string(buf.data(), static_cast<size_t>(n));
}

}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("launch: socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("launch: cannot find a free port: " + err);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int launch(const LaunchOptions& o, const std::vector<std::string>& args) {
  if (o.nproc < 1) throw std::invalid_argument("--nproc must be >= 1");
  if (o.nnodes < 1) throw std::invalid_argument("--nnodes must be >= 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw std::invalid_argument("--node-rank must be in [0, --nnodes)");
  if (o.nnodes > 1 && (o.master_port == 0 || o.master_addr == "127.0.0.1"))
    throw std::invalid_argument(
        "--master-addr and --master-port are required with --nnodes > 1 (machine 0's address "
        "and a free port there; every machine names the same)");
  const std::string exe = o.executable.empty() ? self_executable() : o.executable;
  const int port = o.master_port ? o.master_port : free_port();
  const int world = o.nnodes * o.nproc;
  util::log_info(
      util::strfmt("launch: %d process(es) on this machine, world size %d, store at "
                   "%s:%d",
                   o.nproc, world, o.master_addr.c_str(), port));

  // Signals are forwarded to the ranks (each saves its state and stops), not acted on here.
  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  // Each rank's argv and environment, made before fork: the child only execs.
  std::vector<std::string> argv_s{exe, "run"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::vector<std::string> ours{
      "RANK=",       "WORLD_SIZE=",  "LOCAL_RANK=",  "LOCAL_WORLD_SIZE=",
      "GROUP_RANK=", "MASTER_ADDR=", "MASTER_PORT=", "TORCHELASTIC_USE_AGENT_STORE="};
  std::vector<std::string> base_env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool replaced = false;
    for (const auto& k : ours) replaced = replaced || kv.rfind(k, 0) == 0;
    if (!replaced) base_env.push_back(kv);
  }
  std::vector<std::vector<std::string>> envs(static_cast<size_t>(o.nproc), base_env);
  for (int local = 0; local < o.nproc; ++local) {
    auto& env = envs[static_cast<size_t>(local)];
    env.push_back("RANK=" + std::to_string(o.node_rank * o.nproc + local));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("LOCAL_RANK=" + std::to_string(local));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(o.nproc));
    env.push_back("GROUP_RANK=" + std::to_string(o.node_rank));
    env.push_back("MASTER_ADDR=" + o.master_addr);
    env.push_back("MASTER_PORT=" + std::to_string(port));
  }
  std::vector<std::vector<char*>> envps(static_cast<size_t>(o.nproc));
  for (size_t i = 0; i < envs.size(); ++i) {
    for (auto& kv : envs[i]) envps[i].push_back(kv.data());
    envps[i].push_back(nullptr);
  }
  const pid_t launcher = ::getpid();
  std::vector<pid_t> pids;
  for (int local = 0; local < o.nproc; ++local) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string err = std::strerror(errno);
      for (pid_t p : pids) ::kill(p, SIGTERM);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      throw std::runtime_error("launch: fork: " + err);
    }
    if (pid == 0) {
      // Own process group: a Ctrl-C on the terminal reaches the launcher, which forwards it
      // once. And the rank stops if the launcher dies (also before this line ran).
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(143);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      ::execve(exe.c_str(), argv.data(), envps[static_cast<size_t>(local)].data());
      static const char msg[] = "aefx launch: cannot start the aefx binary\n";
      [[maybe_unused]] const ssize_t n = ::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  std::string started;
  for (size_t i = 0; i < pids.size(); ++i)
    started += util::strfmt("%s rank %d pid %d", i ? "," : "",
                            o.node_rank * o.nproc + static_cast<int>(i), pids[i]);
  util::log_info("launch: started" + started);

  int first_failure = 0;
  int running = o.nproc;
  std::chrono::steady_clock::time_point deadline{};
  bool terminated = false, forwarded = false;
  while (running > 0) {
    if (g_forward_signal) {
      for (pid_t pid : pids)
        if (pid > 0) ::kill(pid, g_forward_signal);
      g_forward_signal = 0;
      forwarded = true;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != pid) continue;
        pids[i] = -1;
        --running;
        const int rank = o.node_rank * o.nproc + static_cast<int>(i);
        if (exit_code(status) != 0) {
          util::log_warn(util::strfmt("launch: rank %d (pid %d) %s", rank, pid,
                                      describe_status(status).c_str()));
          if (first_failure == 0) {
            first_failure = exit_code(status);
            deadline = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(o.grace_seconds * 1000));
          }
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    // A rank failed: the others normally notice at their next collective and stop; any still
    // running after the grace period are terminated, then killed.
    // After a forwarded signal the ranks are saving their progress: no deadline (a second
    // Ctrl-C, forwarded too, stops them at once).
    if (first_failure != 0 && !forwarded && std::chrono::steady_clock::now() > deadline) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, terminated ? SIGKILL : SIGTERM);
      if (!terminated)
        util::log_warn(
            util::strfmt("launch: %d rank(s) still running %.0f s after the first "
                         "failure: terminating them",
                         running, o.grace_seconds));
      terminated = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return first_failure;
}

}  // namespace aefx::dist
