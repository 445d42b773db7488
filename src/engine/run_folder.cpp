#include "aefx/engine/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <torch/version.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "aefx/util/build_info.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"

namespace aefx::engine {
namespace fs = std::filesystem;
using util::Json;

void RunFolder::sweep_temporary_files() const {
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    if (e.is_regular_file() && e.path().filename().string().find(".tmp.") != std::string::npos) {
      std::error_code ignored;
      fs::remove(e.path(), ignored);
    }
  }
}

RunLock::RunLock(const RunFolder& folder) {
  const fs::path file = folder.lock_file();
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error("cannot create " + file.string() + ": " + std::strerror(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    if (err == EWOULDBLOCK) {
      char buf[32] = {};
      const ssize_t got = ::pread(fd_, buf, sizeof buf - 1, 0);
      if (got > 0) holder = std::string(buf, static_cast<size_t>(got));
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    }
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      throw std::runtime_error("cannot lock " + file.string() + ": " + std::strerror(err));
    throw std::invalid_argument(
        "run folder " + folder.dir().string() + " is in use by another aefx run" +
        (holder.empty() ? std::string() : " (process " + holder + ")") +
        "; wait for it to finish, or give this run another name (--set name=...)");
  }
  // The holder's pid, for the message another run prints; the lock itself is what counts.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // The lock holds without the pid; the other run's message then names no process.
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

namespace {

/// Non-finite numbers have no JSON form: they are written as null (and read back as NaN).
Json number(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }
Json number(const std::optional<double>& v) { return v ? number(*v) : Json(nullptr); }

double get_double(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::numeric_limits<double>::quiet_NaN();
  return it->get<double>();
}

std::optional<double> get_optional(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<double>();
}

int64_t get_int(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

std::string get_string(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? std::string() : it->get<std::string>();
}

/// The file parsed, or nullopt when it does not exist. Throws std::runtime_error naming the file
/// when it does not parse.
std::optional<Json> read_json(const fs::path& file) {
  if (!fs::exists(file)) return std::nullopt;
  return util::read_json_file(file);
}

/// Reads a typed summary: `from` converts the parsed file; a file of the wrong shape is named.
template <class T, class F>
std::optional<T> read_summary(const fs::path& file, F from) {
  const auto j = read_json(file);
  if (!j) return std::nullopt;
  try {
    if (!j->is_object()) throw std::runtime_error("not a JSON object");
    return from(*j);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read " + file.string() + ": " + e.what());
  }
}

}  // namespace

Progress Progress::read(const RunFolder& folder) {
  Progress p;
  const auto j = read_json(folder.progress());
  if (!j) return p;
  try {
    p.completed = j->at("completed").get<std::vector<std::string>>();
    p.unfinished = get_string(*j, "unfinished");
    p.stopped_by = get_string(*j, "stopped_by");
    if (j->contains("world_size")) p.world_size = get_int(*j, "world_size");
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read " + folder.progress().string() + " (" + e.what() +
                             "); move it away to start the run folder afresh");
  }
  p.exists = true;
  return p;
}

void Progress::write(const RunFolder& folder) const {
  util::write_json_file(folder.progress(),
                        Json{{"completed", completed},
                             {"unfinished", unfinished.empty() ? Json(nullptr) : Json(unfinished)},
                             {"stopped_by", stopped_by.empty() ? Json(nullptr) : Json(stopped_by)},
                             {"world_size", world_size}});
}

std::optional<PretrainSummary> PretrainSummary::read(const RunFolder& folder) {
  return read_summary<PretrainSummary>(folder.pretrain_summary(), [](const Json& j) {
    PretrainSummary s;
    s.epochs = get_int(j, "epochs");
    s.train_images = get_int(j, "train_images");
    if (j.contains("epoch_images")) s.epoch_images = get_int(j, "epoch_images");
    s.val_images = get_int(j, "val_images");
    s.parameters = get_int(j, "parameters");
    s.val_mse = get_double(j, "val_mse");
    s.val_psnr = get_double(j, "val_psnr");
    s.test_images = get_int(j, "test_images");
    s.test_mse = get_double(j, "test_mse");
    s.test_psnr = get_double(j, "test_psnr");
    s.input_values = get_int(j, "input_values");
    s.code_values = get_int(j, "code_values");
    s.compression_ratio = get_double(j, "compression_ratio");
    s.train_seconds = get_double(j, "train_seconds");
    s.images_per_second = get_optional(j, "images_per_second");
    s.seconds = get_double(j, "seconds");
    for (const auto& e : j.value("history", Json::array())) {
      s.history.push_back({get_int(e, "epoch"), get_double(e, "loss"), get_double(e, "val_mse"),
                           get_double(e, "val_psnr"), get_double(e, "images_per_second"),
                           get_double(e, "seconds")});
    }
    return s;
  });
}

void PretrainSummary::write(const RunFolder& folder) const {
  Json h = Json::array();
  for (const auto& e : history) {
    h.push_back({{"epoch", e.epoch},
                 {"loss", number(e.loss)},
                 {"val_mse", number(e.val_mse)},
                 {"val_psnr", number(e.val_psnr)},
                 {"images_per_second", number(e.images_per_second)},
                 {"seconds", number(e.seconds)}});
  }
  util::write_json_file(folder.pretrain_summary(),
                        Json{{"stage", "pretrain"},
                             {"epochs", epochs},
                             {"train_images", train_images},
                             {"epoch_images", epoch_images},
                             {"val_images", val_images},
                             {"parameters", parameters},
                             {"val_mse", number(val_mse)},
                             {"val_psnr", number(val_psnr)},
                             {"test_images", test_images},
                             {"test_mse", number(test_mse)},
                             {"test_psnr", number(test_psnr)},
                             {"input_values", input_values},
                             {"code_values", code_values},
                             {"compression_ratio", number(compression_ratio)},
                             {"train_seconds", number(train_seconds)},
                             {"images_per_second", number(images_per_second)},
                             {"seconds", number(seconds)},
                             {"history", h}});
}

std::optional<ClassifySummary> ClassifySummary::read(const RunFolder& folder) {
  return read_summary<ClassifySummary>(folder.classify_summary(), [](const Json& j) {
    ClassifySummary s;
    s.code_dim = get_int(j, "code_dim");
    s.best_epoch = get_int(j, "best_epoch");
    s.val_accuracy = get_double(j, "val_accuracy");
    s.code_seconds = get_double(j, "code_seconds");
    s.head_seconds = get_double(j, "head_seconds");
    s.seconds = get_double(j, "seconds");
    s.class_names = j.at("class_names").get<std::vector<std::string>>();
    for (const auto& e : j.value("history", Json::array())) {
      s.history.push_back({get_int(e, "epoch"), get_double(e, "loss"),
                           get_double(e, "val_accuracy"), get_double(e, "val_loss"),
                           get_double(e, "seconds")});
    }
    return s;
  });
}

void ClassifySummary::write(const RunFolder& folder) const {
  Json h = Json::array();
  for (const auto& e : history) {
    h.push_back({{"epoch", e.epoch},
                 {"loss", number(e.loss)},
                 {"val_accuracy", number(e.val_accuracy)},
                 {"val_loss", number(e.val_loss)},
                 {"seconds", number(e.seconds)}});
  }
  util::write_json_file(folder.classify_summary(), Json{{"stage", "classify"},
                                                        {"code_dim", code_dim},
                                                        {"best_epoch", best_epoch},
                                                        {"val_accuracy", number(val_accuracy)},
                                                        {"code_seconds", number(code_seconds)},
                                                        {"head_seconds", number(head_seconds)},
                                                        {"seconds", number(seconds)},
                                                        {"class_names", class_names},
                                                        {"history", h}});
}

std::string BaselineSummary::inputs_for(const config::Config& cfg) {
  std::string line;
  for (const auto& key : config::keys_where(config::kBaselineKeys))
    line += (line.empty() ? "" : " ") + key + "=" + config::get_value(cfg, key);
  return line;
}

std::optional<BaselineSummary> BaselineSummary::read(const RunFolder& folder) {
  return read_summary<BaselineSummary>(folder.baseline_summary(), [](const Json& j) {
    BaselineSummary s;
    s.inputs = get_string(j, "inputs");
    s.input_dim = get_int(j, "input_dim");
    s.test_accuracy = get_double(j, "test_accuracy");
    s.test_images = get_int(j, "test_images");
    s.val_accuracy = get_double(j, "val_accuracy");
    s.best_epoch = get_int(j, "best_epoch");
    s.seconds = get_double(j, "seconds");
    s.knn_accuracy = get_optional(j, "knn_accuracy");
    return s;
  });
}

void BaselineSummary::write(const RunFolder& folder) const {
  util::write_json_file(folder.baseline_summary(), Json{{"stage", "baseline"},
                                                        {"inputs", inputs},
                                                        {"input", "pixels"},
                                                        {"input_dim", input_dim},
                                                        {"test_accuracy", number(test_accuracy)},
                                                        {"test_images", test_images},
                                                        {"val_accuracy", number(val_accuracy)},
                                                        {"best_epoch", best_epoch},
                                                        {"knn_accuracy", number(knn_accuracy)},
                                                        {"seconds", number(seconds)}});
}

std::optional<Metrics> Metrics::read(const RunFolder& folder) {
  return read_summary<Metrics>(folder.metrics(), [](const Json& j) {
    Metrics m;
    m.test_accuracy = get_double(j, "test_accuracy");
    m.test_images = get_int(j, "test_images");
    m.val_accuracy = get_optional(j, "val_accuracy");
    m.class_names = j.value("class_names", std::vector<std::string>{});
    m.per_class_accuracy = j.value("per_class_accuracy", std::vector<double>{});
    m.confusion_matrix = j.value("confusion_matrix", std::vector<std::vector<int64_t>>{});
    m.val_psnr = get_optional(j, "val_psnr");
    m.code_dim = get_int(j, "code_dim");
    m.knn_accuracy = get_optional(j, "knn_accuracy");
    m.knn_k = j.value("knn_k", int64_t{0});
    m.knn_temperature = j.value("knn_temperature", 0.0);
    const auto r = j.find("reconstruction");
    if (r != j.end() && r->is_object() && !r->value("test_mse", Json()).is_null()) {
      PretrainSummary p;
      p.test_mse = get_double(*r, "test_mse");
      p.test_psnr = get_double(*r, "test_psnr");
      p.input_values = get_int(*r, "input_values");
      p.code_values = get_int(*r, "code_values");
      p.compression_ratio = get_double(*r, "compression_ratio");
      m.reconstruction = p;
    }
    const auto b = j.find("baseline");
    if (b != j.end() && b->is_object()) {
      BaselineSummary s;
      s.input_dim = get_int(*b, "input_dim");
      s.test_accuracy = get_double(*b, "test_accuracy");
      s.val_accuracy = get_double(*b, "val_accuracy");
      m.baseline = s;
    }
    const Json t = j.value("timings", Json::object());
    m.pretrain_seconds = get_optional(t, "pretrain_seconds");
    m.classify_seconds = get_optional(t, "classify_seconds");
    m.evaluate_seconds = get_double(t, "evaluate_seconds");
    m.device = get_string(j, "device");
    m.aefx_version = get_string(j, "aefx_version");
    return m;
  });
}

void Metrics::write(const RunFolder& folder) const {
  Json per_class_named = Json::object();
  for (size_t c = 0; c < per_class_accuracy.size() && c < class_names.size(); ++c)
    per_class_named[class_names[c]] = number(per_class_accuracy[c]);
  Json per_class = Json::array();
  for (double a : per_class_accuracy) per_class.push_back(number(a));
  const auto& r = reconstruction;
  Json recon = {{"test_mse", r ? number(r->test_mse) : Json(nullptr)},
                {"test_psnr", r ? number(r->test_psnr) : Json(nullptr)},
                {"input_values", r ? Json(r->input_values) : Json(nullptr)},
                {"code_values", r ? Json(r->code_values) : Json(nullptr)},
                {"compression_ratio", r ? number(r->compression_ratio) : Json(nullptr)}};
  Json base = nullptr;
  if (baseline) {
    base = {{"input", "pixels"},
            {"input_dim", baseline->input_dim},
            {"test_accuracy", number(baseline->test_accuracy)},
            {"val_accuracy", number(baseline->val_accuracy)}};
  }
  util::write_json_file(folder.metrics(), Json{{"test_accuracy", number(test_accuracy)},
                                               {"test_images", test_images},
                                               {"val_accuracy", number(val_accuracy)},
                                               {"class_names", class_names},
                                               {"per_class_accuracy", per_class},
                                               {"per_class_accuracy_by_name", per_class_named},
                                               {"confusion_matrix", confusion_matrix},
                                               {"val_psnr", number(val_psnr)},
                                               {"code_dim", code_dim},
                                               {"knn_accuracy", number(knn_accuracy)},
                                               {"knn_k", knn_k},
                                               {"knn_temperature", knn_temperature},
                                               {"reconstruction", recon},
                                               {"baseline", base},
                                               {"timings",
                                                {{"pretrain_seconds", number(pretrain_seconds)},
                                                 {"classify_seconds", number(classify_seconds)},
                                                 {"evaluate_seconds", number(evaluate_seconds)}}},
                                               {"device", device},
                                               {"aefx_version", AEFX_VERSION}});
}

std::optional<RunRecord> RunRecord::read(const RunFolder& folder) {
  return read_summary<RunRecord>(folder.run_record(), [](const Json& j) {
    RunRecord r;
    r.name = get_string(j, "name");
    r.seed = get_int(j, "seed");
    r.resumed = j.value("resumed", false);
    const Json stages = j.value("stages", Json::object());
    for (const auto& [stage, sec] : stages.items())
      r.stage_seconds.emplace_back(stage, sec.is_number() ? sec.get<double>() : NAN);
    r.wall_seconds = get_double(j, "wall_seconds");
    r.peak_rss_bytes = get_int(j, "peak_rss_bytes");
    r.device = get_string(j, "device");
    r.precision = get_string(j, "precision");
    r.threads = static_cast<int>(get_int(j, "threads"));
    r.world_size = static_cast<int>(get_int(j, "world_size"));
    r.backend = get_string(j, "backend");
    r.aefx_version = get_string(j, "aefx_version");
    r.git_commit = get_string(j, "git_commit");
    r.libtorch_version = get_string(j, "libtorch_version");
    r.machine = j.value("machine", Json::object());
    return r;
  });
}

void RunRecord::write(const RunFolder& folder) const {
  Json stages = Json::object();
  for (const auto& [stage, sec] : stage_seconds) stages[stage] = number(sec);
  util::write_json_file(
      folder.run_record(),
      Json{{"name", name},
           {"seed", seed},
           {"resumed", resumed},
           {"stages", stages},
           {"wall_seconds", number(wall_seconds)},
           {"peak_rss_bytes", peak_rss_bytes},
           {"device", device},
           {"precision", precision},
           {"threads", threads},
           {"world_size", world_size},
           {"backend", backend.empty() ? Json(nullptr) : Json(backend)},
           {"aefx_version", AEFX_VERSION},
           {"git_commit", util::git_commit()},
           {"libtorch_version", util::strfmt("%d.%d.%d", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
                                             TORCH_VERSION_PATCH)},
           {"machine", util::machine_info()}});
}

}  // namespace aefx::engine
