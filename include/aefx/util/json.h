#pragma once
// JSON for the files aefx writes and reads back (metrics.json, stage summaries, progress.json,
// run.json, model.json, metrics.jsonl): nlohmann-json's ordered_json, so keys keep the order they
// were written in.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "aefx/util/fs.h"

namespace aefx::util {

using Json = nlohmann::ordered_json;

namespace detail {

/// Numbers to 10 significant digits, as aefx has always written them: a run's files keep the
/// same figures (full precision would be a one-line change here, but every number would change).
inline void round_numbers(Json& j) {
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (std::isfinite(d)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.10g", d);
      j = std::strtod(buf, nullptr);
    }
  } else if (j.is_structured()) {
    for (auto& e : j) round_numbers(e);
  }
}

}  // namespace detail

/// The text of `value`: `indent` spaces per level, or one line when indent < 0. Integers stay
/// integers, other numbers get 10 significant digits, non-finite numbers become null (nlohmann's
/// rule) and bytes that are not UTF-8 in strings become U+FFFD.
inline std::string dump_json(Json value, int indent = 2) {
  detail::round_numbers(value);
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

/// Writes dump_json(value) and a newline to `file` atomically (util::atomic_write_text).
inline void write_json_file(const std::filesystem::path& file, const Json& value) {
  atomic_write_text(file, dump_json(value) + "\n");
}

/// Parses `text`; a std::runtime_error "cannot parse <where>: <reason>" (one line) when it is not
/// JSON.
inline Json parse_json(const std::string& text, const std::string& where) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    throw std::runtime_error("cannot parse " + where + ": " + e.what());
  }
}

/// Reads and parses `file`; a std::runtime_error naming the file when it cannot be read or is not
/// JSON.
inline Json read_json_file(const std::filesystem::path& file) {
  return parse_json(read_text(file), file.string());
}

}  // namespace aefx::util
