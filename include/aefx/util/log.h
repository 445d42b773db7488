#pragma once
// Minimal logging: lines go to stderr and, once a run folder is open, to its log.txt.
#include <filesystem>
#include <string>

namespace aefx::util {

enum class LogLevel { kQuiet = 0, kInfo = 1, kDebug = 2 };

/// Sets how much is printed to stderr (the log file always gets info and above).
void set_log_level(LogLevel level);
LogLevel log_level();

/// Appends every later line to `path` too (pass an empty path to stop).
void set_log_file(const std::filesystem::path& path);

void log_info(const std::string& line);
void log_warn(const std::string& line);
void log_debug(const std::string& line);

/// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace aefx::util
