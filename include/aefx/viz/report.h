#pragma once
// report.html: one self-contained page per run folder (styles inline, pictures embedded as
// data: URIs, nothing fetched), readable offline and attachable to a ticket or an e-mail.
#include <filesystem>
#include <string>

namespace aefx::viz {

/// Writes run_dir/report.html from the files in the run folder: the final metrics
/// (metrics.json), a per-class table, the pictures, the per-epoch figures (metrics.jsonl), the
/// timings (run.json and the stage summaries), the environment and the config. Whatever is
/// missing (a stage not run yet) is said so on the page. When the page has loaded, a script sets
/// the body's data-images-loaded attribute to "loaded/total" (checked in a headless browser by
/// the tests). Throws std::runtime_error naming the file when run_dir holds no config.yaml or a
/// file does not parse. Returns the report's path.
std::filesystem::path write_report(const std::filesystem::path& run_dir);

/// RFC 4648 base64 of `bytes` (for data: URIs).
std::string base64(const std::string& bytes);

/// `text` with &, <, >, " and ' escaped for HTML.
std::string html_escape(const std::string& text);

}  // namespace aefx::viz
