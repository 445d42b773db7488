#include "aefx/viz/report.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "aefx/engine/run_folder.h"
#include "aefx/metrics/metrics.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"

namespace aefx::viz {
namespace {

namespace fs = std::filesystem;

/// A summary of the run folder, or nullopt when its file does not exist; an unreadable one is
/// named (report: cannot parse FILE: ...).
template <class T>
std::optional<T> load(const engine::RunFolder& folder) {
  try {
    return T::read(folder);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("report: ") + e.what());
  }
}

/// A field of an optional summary as a number; NaN (shown as "–") when the summary is absent.
template <class T, class F>
double num(const std::optional<T>& summary, F T::*field) {
  return summary ? static_cast<double>((*summary).*field) : NAN;
}

/// A number for the page; "–" when unknown.
std::string fmt(double v, const char* f = "%.4g") {
  return std::isfinite(v) ? util::strfmt(f, v) : std::string("&ndash;");
}

std::string pct(double v) { return fmt(100 * v, "%.2f%%"); }

std::string seconds(double v) {
  if (!std::isfinite(v)) return "&ndash;";
  if (v < 120) return util::strfmt("%.1f s", v);
  return util::strfmt("%.1f min", v / 60);
}

constexpr const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#59636e;font-size:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;min-width:150px}
.card .v{font-size:24px;font-weight:600}
.card .k{color:#59636e;font-size:13px}
table{border-collapse:collapse;background:#fff;font-size:14px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:right}
th{background:#eef1f4}
td.l,th.l{text-align:left}
.bar{display:inline-block;height:10px;background:#4c72b0;vertical-align:middle;margin-right:6px}
figure{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:0 0 16px;padding:12px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#59636e;font-size:13px;margin-top:6px}
pre{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px;overflow:auto;font-size:13px}
.missing{color:#9a6700}
)";

/// The pictures, in page order: file, heading, caption.
struct Picture {
  engine::RunFile file;
  const char* heading;
  const char* caption;
};
const std::vector<Picture>& pictures() {
  static const std::vector<Picture> p = {
      {&engine::RunFolder::curves_png, "Training curves",
       "Per epoch: the pretraining loss, the validation reconstruction error, the head's "
       "training and validation loss, and its validation accuracy."},
      {&engine::RunFolder::reconstructions_png, "Reconstructions",
       "Validation images (upper rows) and the autoencoder's reconstructions of them (lower "
       "rows)."},
      {&engine::RunFolder::confusion_png, "Confusion matrix",
       "Test set: rows are the true classes, columns the predictions; the right-hand column is "
       "each class's accuracy."},
      {&engine::RunFolder::latents_png, "Latent codes",
       "The frozen encoder's codes of test images (standardised as the head sees them), "
       "projected on their first two principal components and coloured by class."}};
  return p;
}

}  // namespace

std::string base64(const std::string& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += k[v >> 18];
    out += k[(v >> 12) & 63];
    out += k[(v >> 6) & 63];
    out += k[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += k[v >> 18];
    out += k[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? k[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

fs::path write_report(const fs::path& run_dir) {
  const engine::RunFolder folder(run_dir);
  const fs::path config_file = folder.config();
  if (!fs::exists(config_file)) {
    throw std::runtime_error("report: " + run_dir.string() +
                             " is not a run folder (it has no config.yaml)");
  }
  std::string name = run_dir.filename().string();
  try {
    const YAML::Node cfg = YAML::LoadFile(config_file.string());
    if (cfg.IsMap() && cfg["name"] && cfg["name"].IsScalar()) name = cfg["name"].as<std::string>();
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("report: cannot parse " + config_file.string() + ": " + e.msg);
  }
  using engine::ClassifySummary, engine::Metrics, engine::PretrainSummary, engine::RunRecord;
  const auto metrics = load<Metrics>(folder);
  const auto pre = load<PretrainSummary>(folder);
  const auto cls = load<ClassifySummary>(folder);
  const auto run = load<RunRecord>(folder);
  const engine::Progress progress = [&] {
    try {
      return engine::Progress::read(folder);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string("report: ") + e.what());
    }
  }();

  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    << "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
    << "<title>aefx run " << html_escape(name) << "</title><style>" << kStyle
    << "</style></head>\n<body><main>\n";
  h << "<h1>aefx run: " << html_escape(name) << "</h1>\n<div class=\"sub\">"
    << html_escape(run_dir.string()) << " &middot; report written " << util::utc_now()
    << "</div>\n";

  // Headline figures.
  std::string stages_done;
  for (const auto& stage : progress.completed)
    stages_done += (stages_done.empty() ? "" : ", ") + stage;
  h << "<div class=\"cards\">";
  auto card = [&](const std::string& value, const std::string& key) {
    h << "<div class=\"card\"><div class=\"v\">" << value << "</div><div class=\"k\">" << key
      << "</div></div>";
  };
  card(pct(num(metrics, &Metrics::test_accuracy)),
       "test accuracy (" + fmt(num(metrics, &Metrics::test_images), "%.0f") + " images)");
  card(pct(num(cls, &ClassifySummary::val_accuracy)),
       "best validation accuracy (epoch " + fmt(num(cls, &ClassifySummary::best_epoch), "%.0f") +
           ")");
  if (metrics && metrics->knn_accuracy) {
    card(pct(*metrics->knn_accuracy),
         "k-NN test accuracy (k " + fmt(static_cast<double>(metrics->knn_k), "%.0f") +
             ", cosine, temperature " + fmt(metrics->knn_temperature, "%g") + ")");
  }
  card(fmt(num(pre, &PretrainSummary::val_psnr), "%.2f dB"), "validation reconstruction PSNR");
  if (std::isfinite(num(pre, &PretrainSummary::test_psnr))) {
    card(fmt(pre->test_psnr, "%.2f dB"),
         "test reconstruction PSNR, " + fmt(static_cast<double>(pre->input_values), "%.0f") +
             " values from " + fmt(static_cast<double>(pre->code_values), "%.0f") +
             " (compression " + fmt(pre->compression_ratio, "%.2f") + ":1)");
  }
  // The baseline as evaluate reported it (null there when it did not run for this config).
  if (metrics && metrics->baseline) {
    card(pct(metrics->baseline->test_accuracy),
         "raw-pixel baseline: the same head on " +
             fmt(static_cast<double>(metrics->baseline->input_dim), "%.0f") + " pixels (test)");
  }
  card(seconds(num(run, &RunRecord::wall_seconds)), "wall time of the run");
  card(html_escape(stages_done.empty() ? std::string("none") : stages_done), "stages completed");
  h << "</div>\n";
  if (!progress.unfinished.empty()) {
    h << "<p class=\"missing\">Stage <b>" << html_escape(progress.unfinished)
      << "</b> did not finish ("
      << html_escape(progress.stopped_by.empty() ? "unknown cause" : progress.stopped_by)
      << "); continue it with <code>aefx run CONFIG --resume</code>.</p>\n";
  }

  // Per-class table.
  h << "<h2>Per-class test accuracy</h2>\n";
  if (metrics && !metrics->class_names.empty() && !metrics->confusion_matrix.empty()) {
    const auto& names = metrics->class_names;
    const auto& cm = metrics->confusion_matrix;
    h << "<table><tr><th class=\"l\">class</th><th class=\"l\">accuracy</th><th>correct</th>"
         "<th>images</th><th class=\"l\">most often mistaken for</th></tr>\n";
    for (size_t c = 0; c < names.size() && c < cm.size(); ++c) {
      int64_t total = 0, worst = -1;
      size_t worst_class = 0;
      for (size_t j = 0; j < cm[c].size(); ++j) {
        total += cm[c][j];
        if (j != c && cm[c][j] > worst) {
          worst = cm[c][j];
          worst_class = j;
        }
      }
      const double acc = total > 0 ? static_cast<double>(cm[c][c]) / static_cast<double>(total) : 0;
      h << "<tr><td class=\"l\">" << html_escape(names[c]) << "</td><td class=\"l\">"
        << "<span class=\"bar\" style=\"width:" << util::strfmt("%.0f", 150 * acc) << "px\"></span>"
        << pct(acc) << "</td><td>" << cm[c][c] << "</td><td>" << total << "</td><td class=\"l\">"
        << (worst > 0 ? html_escape(names[worst_class]) +
                            util::strfmt(" (%lld)", static_cast<long long>(worst))
                      : std::string("&ndash;"))
        << "</td></tr>\n";
    }
    h << "</table>\n";
  } else {
    h << "<p class=\"missing\">No test metrics yet: run the evaluate stage.</p>\n";
  }

  // Pictures, embedded.
  for (const auto& p : pictures()) {
    h << "<h2>" << p.heading << "</h2>\n";
    const fs::path file = (folder.*p.file)();
    const std::string name = file.filename().string();
    if (!fs::exists(file)) {
      h << "<p class=\"missing\">" << name
        << " is not there (its stage has not run, report.pictures is false, or aefx was built "
           "without OpenCV).</p>\n";
      continue;
    }
    h << "<figure><img alt=\"" << name << "\" src=\"data:image/png;base64,"
      << base64(util::read_text(file)) << "\"><figcaption>" << name << ": " << p.caption
      << "</figcaption></figure>\n";
  }

  // Timings.
  h << "<h2>Timings</h2>\n<table><tr><th class=\"l\">what</th><th>wall time</th>"
       "<th class=\"l\">detail</th></tr>\n";
  auto timing = [&](const std::string& what, double sec, const std::string& detail) {
    if (!std::isfinite(sec)) return;
    h << "<tr><td class=\"l\">" << what << "</td><td>" << seconds(sec) << "</td><td class=\"l\">"
      << detail << "</td></tr>\n";
  };
  if (pre) {
    timing("pretrain", pre->seconds,
           fmt(static_cast<double>(pre->epochs), "%.0f") + " epochs, " +
               (pre->epoch_images > 0 && pre->epoch_images < pre->train_images
                    ? fmt(static_cast<double>(pre->epoch_images), "%.0f") + " of "
                    : std::string()) +
               fmt(static_cast<double>(pre->train_images), "%.0f") + " images, " +
               fmt(pre->images_per_second.value_or(NAN), "%.0f") + " img/s in training");
  }
  if (cls) {
    timing("classify", cls->seconds,
           "latent codes " + seconds(cls->code_seconds) + ", head " + seconds(cls->head_seconds) +
               ", " + fmt(static_cast<double>(cls->code_dim), "%.0f") + " values per code");
  }
  timing("evaluate", num(metrics, &Metrics::evaluate_seconds), "");
  if (run) {
    for (const auto& [stage, sec] : run->stage_seconds)
      if (stage == "export") timing("export", sec, "");
    timing(
        "whole run", run->wall_seconds,
        "peak memory " +
            fmt(static_cast<double>(run->peak_rss_bytes) / (1024.0 * 1024.0 * 1024.0), "%.2f GiB") +
            (run->resumed ? " (this invocation resumed a stopped run)" : ""));
  }
  h << "</table>\n";

  // Per-epoch figures.
  const fs::path jsonl = folder.metrics_jsonl();
  if (fs::exists(jsonl)) {
    h << "<h2>Per-epoch figures</h2>\n<details><summary>metrics.jsonl (also metrics.csv)"
         "</summary><table><tr><th class=\"l\">stage</th><th>epoch</th><th>loss</th>"
         "<th>val loss / MSE</th><th>val accuracy / PSNR</th><th>lr</th><th>img/s</th>"
         "<th>seconds</th></tr>\n";
    const auto records = [&] {
      try {
        return metrics::EpochLog(jsonl, folder.metrics_csv()).records();
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(std::string("report: ") + e.what());
      }
    }();
    for (const auto& r : records) {
      const bool pre_row = r.stage == "pretrain";
      h << "<tr><td class=\"l\">" << html_escape(r.stage) << "</td><td>"
        << fmt(static_cast<double>(r.epoch), "%.0f") << "/"
        << fmt(static_cast<double>(r.epochs), "%.0f") << "</td><td>" << fmt(r.loss) << "</td><td>"
        << fmt(pre_row ? r.val_mse : r.val_loss) << "</td><td>"
        << (pre_row ? fmt(r.val_psnr, "%.2f dB") : pct(r.val_accuracy)) << "</td><td>"
        << fmt(r.lr, "%.2e") << "</td><td>" << fmt(r.images_per_second, "%.0f") << "</td><td>"
        << fmt(r.seconds, "%.1f") << "</td></tr>\n";
    }
    h << "</table></details>\n";
  }

  // Environment and config.
  h << "<h2>Environment</h2>\n<table>";
  auto env = [&](const std::string& k, const std::string& v) {
    if (!v.empty())
      h << "<tr><th class=\"l\">" << k << "</th><td class=\"l\">" << html_escape(v) << "</td></tr>";
  };
  env("aefx", run ? run->aefx_version : metrics ? metrics->aefx_version : "");
  if (run) {
    env("git commit", run->git_commit);
    env("LibTorch", run->libtorch_version);
  }
  env("device", run ? run->device : metrics ? metrics->device : "");
  if (run) {
    env("CPU threads", std::to_string(run->threads));
    // util::machine_info()'s description, as run.json holds it.
    const auto& m = run->machine;
    auto text = [&](const char* key) {
      if (!m.contains(key) || m[key].is_null()) return std::string();
      return m[key].is_string() ? m[key].get<std::string>() : util::dump_json(m[key]);
    };
    env("CPU", text("cpu"));
    env("logical cores", text("logical_cores"));
    if (m.contains("memory_gib") && m["memory_gib"].is_number())
      env("memory", fmt(m["memory_gib"].get<double>(), "%.1f GiB"));
    env("OS", text("os"));
  }
  h << "</table>\n<h2>Config</h2>\n<pre>" << html_escape(util::read_text(config_file))
    << "</pre>\n";
  h << "<script>window.addEventListener('load',function(){var i=document.images,n=0;"
       "for(var k=0;k<i.length;k++)if(i[k].complete&&i[k].naturalWidth>0)n++;"
       "document.body.setAttribute('data-images-loaded',n+'/'+i.length);});</script>\n"
    << "</main></body></html>\n";
  const fs::path out = folder.report();
  util::atomic_write_text(out, h.str());
  return out;
}

}  // namespace aefx::viz
