#include "aefx/util/build_info.h"

#include <cstdio>
#include <fstream>
#include <thread>

#include "aefx_git_commit.h"

namespace aefx::util {
namespace {

/// The value after `key` on the first line of `path` that starts with it ("key: value" or
/// key=value); quotes and separators are stripped.
std::string field(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    auto v = line.substr(key.size());
    const auto start = v.find_first_not_of(" \t:=\"");
    if (start == std::string::npos) return "unknown";
    v = v.substr(start);
    while (!v.empty() && (v.back() == '"' || v.back() == ' ')) v.pop_back();
    return v;
  }
  return "unknown";
}

}  // namespace

std::string git_commit() { return AEFX_GIT_COMMIT; }

namespace {

/// Total memory in GiB from /proc/meminfo; < 0 when it cannot be read.
double memory_gib() {
  try {
    return static_cast<double>(std::stoll(field("/proc/meminfo", "MemTotal"))) / (1024.0 * 1024.0);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

std::string machine_summary() {
  const double gib = memory_gib();
  char memory[32] = "unknown memory";
  if (gib >= 0) std::snprintf(memory, sizeof memory, "%.1f GiB", gib);
  return field("/proc/cpuinfo", "model name") + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " logical cores, " + memory + ", " +
         field("/etc/os-release", "PRETTY_NAME");
}

Json machine_info() {
  const double gib = memory_gib();
  return Json::object({{"cpu", field("/proc/cpuinfo", "model name")},
                       {"logical_cores", static_cast<int64_t>(std::thread::hardware_concurrency())},
                       {"memory_gib", gib >= 0 ? Json(gib) : Json("unknown")},
                       {"os", field("/etc/os-release", "PRETTY_NAME")}});
}

}  // namespace aefx::util
