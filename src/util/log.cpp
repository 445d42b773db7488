#include "aefx/util/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>

namespace aefx::util {
namespace {

struct LogState {
  std::mutex mu;
  LogLevel level = LogLevel::kInfo;
  std::string prefix;  ///< before every stderr line
  std::ofstream file;
  bool status_shown = false;
};

void clear_status(LogState& s) {
  if (!s.status_shown) return;
  std::cerr << "\r\033[K" << std::flush;
  s.status_shown = false;
}

LogState& state() {
  static LogState s;
  return s;
}

void emit(LogLevel level, const std::string& prefix, const std::string& line) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.level >= level) {
    clear_status(s);
    std::cerr << s.prefix << prefix << line << std::endl;
  }
  if (s.file.is_open() && level <= LogLevel::kInfo) s.file << prefix << line << std::endl;
}

}  // namespace

void set_log_level(LogLevel level) { state().level = level; }
LogLevel log_level() { return state().level; }
void set_log_prefix(const std::string& prefix) { state().prefix = prefix; }
const std::string& log_prefix() { return state().prefix; }

void set_log_file(const std::filesystem::path& path) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.file.is_open()) s.file.close();
  if (!path.empty()) s.file.open(path, std::ios::app);
}

void log_info(const std::string& line) { emit(LogLevel::kInfo, "", line); }
void log_warn(const std::string& line) { emit(LogLevel::kQuiet, "warning: ", line); }
void log_debug(const std::string& line) { emit(LogLevel::kDebug, "", line); }

void log_to_file(const std::string& text) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file.is_open()) return;
  s.file << text;
  if (!text.empty() && text.back() != '\n') s.file << '\n';
  s.file.flush();
}

void set_status_line(const std::string& line) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (line.empty()) {
    clear_status(s);
    return;
  }
  std::cerr << "\r" << line << "\033[K" << std::flush;
  s.status_shown = true;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string strfmt(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  va_end(ap2);
  return out;
}

}  // namespace aefx::util
