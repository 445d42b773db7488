#pragma once
// Minimal logging: lines go to stderr and, once a run folder is open, to its log.txt. On a
// terminal one status line (the progress bar) may sit below them, redrawn in place.
#include <filesystem>
#include <string>

namespace aefx::util {

enum class LogLevel { kQuiet = 0, kInfo = 1, kDebug = 2 };

/// Sets how much is printed to stderr (the log file always gets info and above).
void set_log_level(LogLevel level);
LogLevel log_level();
/// Puts `prefix` (e.g. "rank 1: ") before every line printed to stderr from now on.
void set_log_prefix(const std::string& prefix);
const std::string& log_prefix();

/// Appends every later line to `path` too (pass an empty path to stop).
void set_log_file(const std::filesystem::path& path);

void log_info(const std::string& line);
void log_warn(const std::string& line);
void log_debug(const std::string& line);
/// Writes `text` (one or more lines) to the log file only, e.g. the resolved config, or the
/// error the CLI prints after the run folder's log was closed.
void log_to_file(const std::string& text);

/// Draws `line` in place of the previous status line on stderr (carriage return, no newline);
/// an empty line removes it. Log lines printed meanwhile clear it first. Never in the log file.
void set_status_line(const std::string& line);

/// The current time, UTC, ISO 8601 ("2026-11-22T23:41:05Z").
std::string utc_now();

/// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace aefx::util
