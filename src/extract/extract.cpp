#include "aefx/extract/extract.h"

#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "aefx/data/preprocess.h"
#include "aefx/extract/npy.h"
#include "aefx/util/fs.h"
#include "aefx/util/hash.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/precision.h"
#include "aefx/util/progress.h"
#include "aefx/util/runtime.h"

namespace aefx::extract {
namespace fs = std::filesystem;
namespace {

/// One batch of inputs [first, end): the images that decoded, which inputs they are, and why the
/// others were skipped.
struct Batch {
  int64_t first = 0, end = 0;
  torch::Tensor images;  ///< uint8 K x C x S x S
  std::vector<int64_t> kept;
  std::vector<std::pair<int64_t, std::string>> skipped;
};

/// The batches of `inputs` from input `start` on, in order. Image files are decoded by worker
/// threads a few batches ahead of the caller; images in memory are sliced when asked for.
class BatchSource {
 public:
  BatchSource(const Inputs& inputs, const data::InputShape& shape, int64_t batch_size,
              int64_t start, int64_t workers)
      : inputs_(inputs), shape_(shape), batch_size_(batch_size), start_(start) {
    batches_ = (inputs.size() - start + batch_size - 1) / batch_size;
    if (inputs.images.defined() || batches_ == 0) return;
    const int64_t n = std::min(workers, batches_);
    ahead_ = 2 * n;
    for (int64_t t = 0; t < n; ++t) threads_.emplace_back([this] { work(); });
  }

  ~BatchSource() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  bool done() const { return taken_ == batches_; }

  Batch next() {
    const int64_t b = taken_++;
    if (threads_.empty()) return make(b);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return error_ || ready_.count(b) > 0; });
    if (error_) std::rethrow_exception(error_);
    Batch batch = std::move(ready_[b]);
    ready_.erase(b);
    consumed_ = b + 1;
    lock.unlock();
    cv_.notify_all();
    return batch;
  }

 private:
  Batch make(int64_t b) const {
    Batch batch;
    batch.first = start_ + b * batch_size_;
    batch.end = std::min(inputs_.size(), batch.first + batch_size_);
    if (inputs_.images.defined()) {
      batch.images =
          data::to_channels(inputs_.images.slice(0, batch.first, batch.end), shape_.channels);
      for (int64_t i = batch.first; i < batch.end; ++i) batch.kept.push_back(i);
      return batch;
    }
    std::vector<torch::Tensor> images;
    for (int64_t i = batch.first; i < batch.end; ++i) {
      try {
        images.push_back(data::decode_image(inputs_.names[static_cast<size_t>(i)], shape_.size));
        batch.kept.push_back(i);
      } catch (const std::exception& e) {
        batch.skipped.emplace_back(i, e.what());
      }
    }
    batch.images = images.empty() ? torch::empty({0, 3, shape_.size, shape_.size}, torch::kUInt8)
                                  : torch::stack(images);
    // A grey model gets grey images, as `aefx predict` converts them.
    batch.images = data::to_channels(batch.images, shape_.channels);
    return batch;
  }

  void work() {
    try {
      while (true) {
        int64_t b;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock,
                   [&] { return stop_ || claimed_ < std::min(batches_, consumed_ + ahead_); });
          if (stop_ || claimed_ >= batches_) return;
          b = claimed_++;
        }
        Batch batch = make(b);
        {
          std::lock_guard<std::mutex> lock(mu_);
          ready_[b] = std::move(batch);
        }
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
      cv_.notify_all();
    }
  }

  const Inputs& inputs_;
  data::InputShape shape_;
  int64_t batch_size_, start_, batches_ = 0, taken_ = 0, ahead_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  int64_t claimed_ = 0, consumed_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string inputs_fingerprint(const Inputs& inputs) {
  uint64_t h = util::fnv1a(std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.names.size(); ++i)
    h = util::fnv1a(inputs.labels[i], util::fnv1a(inputs.names[i] + '\n', h));
  return util::hex64(h);
}

/// The model as a resumed extraction must find it again: its file, size and metadata.
util::Json model_identity(const models::ExportedModel& encoder) {
  std::error_code ec;
  const auto path = fs::absolute(encoder.path(), ec);
  return util::Json{{"path", (ec ? fs::path(encoder.path()) : path).string()},
                    {"bytes", static_cast<int64_t>(fs::file_size(encoder.path()))},
                    {"meta", util::hex64(util::fnv1a(encoder.meta_json()))}};
}

const char* dtype_name(torch::ScalarType dtype) {
  return dtype == torch::kHalf ? "float16" : "float32";
}

/// Where an extraction stands: saved after every batch (kStateFile), read back by --resume.
struct State {
  util::Json identity;  ///< model, inputs, dtype, code length: what must match to resume
  int64_t next_input = 0, rows = 0, index_bytes = 0;
  util::Json skipped = util::Json::array();  ///< {"path", "reason"} per skipped input

  util::Json to_json() const {
    return util::Json{{"identity", identity},
                      {"next_input", next_input},
                      {"rows", rows},
                      {"index_bytes", index_bytes},
                      {"skipped", skipped}};
  }
  static State read(const fs::path& file) {
    const auto j = util::read_json_file(file);
    try {
      State s;
      s.identity = j.at("identity");
      s.next_input = j.at("next_input").get<int64_t>();
      s.rows = j.at("rows").get<int64_t>();
      s.index_bytes = j.at("index_bytes").get<int64_t>();
      s.skipped = j.at("skipped");
      return s;
    } catch (const util::Json::exception& e) {
      throw std::runtime_error(file.string() + " is damaged (" + e.what() +
                               "); remove the folder to start again");
    }
  }
};

/// The first key of `want` whose value differs in `have` ("" when none).
std::string first_difference(const util::Json& want, const util::Json& have) {
  for (const auto& [key, value] : want.items()) {
    if (!have.contains(key) || have.at(key) != value) return key;
  }
  return "";
}

bool empty_or_missing(const fs::path& dir) {
  std::error_code ec;
  return !fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec));
}

}  // namespace

Inputs inputs_from_paths(const std::vector<std::string>& paths) {
  if (paths.empty())
    throw std::invalid_argument("no inputs: name image files or folders, or --data DIR");
  Inputs in;
  int64_t files = 0, folders = 0;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      const auto found = data::find_images(p);
      if (found.empty()) {
        throw std::runtime_error("input folder " + p + " holds no image file (" +
                                 "searched recursively for .png, .jpg, .jpeg, .bmp, .ppm, .pgm, "
                                 ".pbm, .tif, .tiff, .webp)");
      }
      in.names.insert(in.names.end(), found.begin(), found.end());
      ++folders;
    } else if (fs::exists(p, ec)) {
      in.names.push_back(p);
      ++files;
    } else {
      throw std::invalid_argument("input " + p + " does not exist");
    }
  }
  if (!data::can_decode_images()) {
    throw std::runtime_error(
        "extracting image files needs OpenCV: aefx was built without it (use --data with "
        "--format cifar10-binary or idx, or rebuild with OpenCV installed)");
  }
  in.labels.assign(in.names.size(), "");
  in.source = util::strfmt("%lld image file(s) from %lld file argument(s) and %lld folder(s)",
                           static_cast<long long>(in.size()), static_cast<long long>(files),
                           static_cast<long long>(folders));
  return in;
}

Inputs inputs_from_data(const config::DataConfig& cfg, data::Split split) {
  Inputs in;
  const std::string split_name = split == data::Split::kTrain ? "train" : "test";
  in.source =
      std::string(config::name_of(cfg.format)) + " " + cfg.root + " (" + split_name + " split)";
  if (cfg.format == config::DataFormat::kImageFolder) {
    auto list = data::list_image_folder(cfg.root, split);
    in.names = std::move(list.files);
    for (const int64_t label : list.labels)
      in.labels.push_back(list.class_names[static_cast<size_t>(label)]);
    if (!data::can_decode_images()) {
      throw std::runtime_error("data.format image-folder (" + cfg.root +
                               "): aefx was built without OpenCV; rebuild with OpenCV installed");
    }
    return in;
  }
  config::DataConfig all = cfg;
  all.limit_train = all.limit_test = 0;
  const auto ds = data::load_split(all, split, 0);
  in.names = data::record_names(cfg, split, ds.size());
  const auto labels = ds.labels.contiguous();
  for (int64_t i = 0; i < ds.size(); ++i)
    in.labels.push_back(ds.class_names[static_cast<size_t>(labels[i].item<int64_t>())]);
  in.images = ds.images;
  return in;
}

std::string encoder_file(const std::string& model) {
  std::error_code ec;
  if (fs::is_directory(model, ec)) {
    const fs::path file = fs::path(model) / "encoder.pt";
    if (!fs::exists(file, ec)) {
      throw std::runtime_error("run folder " + model +
                               " has no encoder.pt (its export stage writes it: aefx run CONFIG "
                               "--stages export)");
    }
    return file.string();
  }
  return model;
}

Result extract(models::ExportedModel& encoder, const Inputs& inputs, const Options& options) {
  if (inputs.size() == 0) throw std::invalid_argument("no inputs to extract");
  const fs::path out(options.out);
  const fs::path state_file = out / kStateFile, meta_file = out / kMetaFile;
  const fs::path features_file = out / kFeaturesFile, index_file = out / kIndexFile;
  const auto meta = util::parse_json(encoder.meta_json(), encoder.path());
  const int64_t code_dim = meta.value("code_dim", int64_t{0});
  if (code_dim <= 0) throw std::runtime_error(encoder.path() + ": its metadata has no code_dim");

  State state;
  state.identity = util::Json{{"model", model_identity(encoder)},
                              {"inputs", inputs_fingerprint(inputs)},
                              {"input_count", inputs.size()},
                              {"dtype", dtype_name(options.dtype)},
                              {"precision", util::precision_name(options.precision)},
                              {"code_dim", code_dim}};
  Result result;
  result.inputs = inputs.size();
  std::error_code ec;
  if (options.resume && fs::exists(state_file, ec)) {
    const State saved = State::read(state_file);
    const std::string diff = first_difference(state.identity, saved.identity);
    if (!diff.empty()) {
      throw std::invalid_argument(
          "cannot resume the extraction in " + out.string() + ": its " + diff + " differs (" +
          util::dump_json(saved.identity.value(diff, util::Json()), -1) + " there, " +
          util::dump_json(state.identity[diff], -1) + " now); use another --out");
    }
    state = saved;
    result.resumed_from = state.next_input;
  } else if (options.resume && fs::exists(meta_file, ec)) {
    const auto done = util::read_json_file(meta_file);
    util::log_info("extraction in " + out.string() + " is complete (" +
                   std::to_string(done.value("rows", int64_t{0})) + " rows); nothing to do");
    result.already_complete = true;
    result.rows = done.value("rows", int64_t{0});
    return result;
  } else if (!empty_or_missing(out)) {
    throw std::invalid_argument(
        "output folder " + out.string() +
        (options.resume ? " holds no extraction to resume (no " + std::string(kStateFile) + ")"
                        : " exists and is not empty; pass --resume to continue an extraction "
                          "stopped there, or choose another --out"));
  }
  util::ensure_writable_dir(out);
  util::install_signal_handlers();
  encoder.freeze();

  // Files first cut back to what the saved state says is whole.
  NpyRowFile features(features_file, options.dtype, code_dim, state.rows);
  util::AppendFile index(index_file, state.index_bytes);
  if (state.index_bytes == 0) {
    const std::string header = "row,path,label\n";
    index.append(header.data(), header.size());
    state.index_bytes = index.size();
  }
  auto save_state = [&] {
    util::atomic_write_text(state_file, util::dump_json(state.to_json()), false);
  };
  save_state();

  const data::InputShape shape{encoder.channels(), encoder.image_size()};
  const int64_t workers = options.workers > 0
                              ? options.workers
                              : std::max<int64_t>(1, std::thread::hardware_concurrency());
  util::log_info(util::strfmt(
      "extract: %s with %s -> %s (%lld x %lld %s)%s", inputs.source.c_str(), encoder.path().c_str(),
      out.c_str(), static_cast<long long>(inputs.size()), static_cast<long long>(code_dim),
      dtype_name(options.dtype),
      result.resumed_from >= 0
          ? util::strfmt(", resuming at input %lld", static_cast<long long>(state.next_input))
                .c_str()
          : ""));

  const double t0 = util::now_seconds();
  util::ProgressDisplay progress;
  BatchSource source(inputs, shape, options.batch_size, state.next_input, workers);
  const int64_t first = state.next_input;
  while (!source.done()) {
    Batch batch = source.next();
    torch::Tensor codes;
    if (batch.images.size(0) > 0) {
      util::Autocast autocast(encoder.device(), options.precision);
      codes = encoder.forward(data::to_float(batch.images, encoder.device()));
      TORCH_CHECK(
          codes.dim() == 2 && codes.size(0) == batch.images.size(0) && codes.size(1) == code_dim,
          encoder.path(), " gave codes of shape ", codes.sizes(), " for ", batch.images.size(0),
          " images; its metadata says ", code_dim, " values each");
      codes = codes.to(torch::kCPU, options.dtype).contiguous();
    }
    std::string lines;
    for (size_t j = 0; j < batch.kept.size(); ++j) {
      const auto i = static_cast<size_t>(batch.kept[j]);
      lines += std::to_string(state.rows + static_cast<int64_t>(j)) + "," +
               csv_field(inputs.names[i]) + "," + csv_field(inputs.labels[i]) + "\n";
    }
    // Rows, then their index lines, then the state: a process killed anywhere in between resumes
    // from the state, and a failed write cuts both files back to it.
    try {
      if (codes.defined()) features.append(codes);
      index.append(lines.data(), lines.size());
    } catch (const std::exception& e) {
      features.truncate(state.rows);
      index.truncate(state.index_bytes);
      throw std::runtime_error(std::string(e.what()) + " (" + std::to_string(state.rows) +
                               " rows written and indexed; free space, then continue with "
                               "--resume)");
    }
    for (const auto& [i, reason] : batch.skipped) {
      util::log_warn("skipped " + reason);
      state.skipped.push_back(
          util::Json{{"path", inputs.names[static_cast<size_t>(i)]}, {"reason", reason}});
    }
    state.rows = features.rows();
    state.index_bytes = index.size();
    state.next_input = batch.end;
    save_state();

    const double now = util::now_seconds();
    if (progress.due(now)) {
      util::ProgressInfo p;
      p.stage = "extract";
      p.step = state.next_input;
      p.steps = inputs.size();
      const double rate = static_cast<double>(state.next_input - first) / std::max(now - t0, 1e-9);
      p.images_per_second = rate;
      p.eta_seconds = static_cast<double>(inputs.size() - state.next_input) / std::max(rate, 1e-9);
      p.show_loss = false;
      progress.update(p, now);
    }
    util::throw_if_interrupted("during extraction into " + out.string() +
                               " (continue with --resume)");
  }
  progress.clear();
  features.sync();
  index.sync();
  result.rows = state.rows;
  result.skipped = static_cast<int64_t>(state.skipped.size());
  result.seconds = util::now_seconds() - t0;

  util::Json record{{"model", encoder.path()},
                    {"model_meta", meta},
                    {"code_dim", code_dim},
                    {"pooling", meta.value("pooling", "")},
                    {"dtype", dtype_name(options.dtype)},
                    {"precision", util::precision_name(options.precision)},
                    {"rows", state.rows},
                    {"inputs", inputs.size()},
                    {"source", inputs.source},
                    {"skipped", state.skipped},
                    {"batch_size", options.batch_size},
                    {"device", encoder.device().str()},
                    {"aefx_version", AEFX_VERSION},
                    {"seconds", result.seconds},
                    {"images_per_second",
                     static_cast<double>(inputs.size() - first) / std::max(result.seconds, 1e-9)},
                    {"resumed_from", result.resumed_from >= 0 ? util::Json(result.resumed_from)
                                                              : util::Json(nullptr)},
                    {"files",
                     {{kFeaturesFile, "N x code_dim codes, row i = line i of index.csv"},
                      {kIndexFile, "row,path,label (label empty when unknown)"}}}};
  util::write_json_file(meta_file, record);
  fs::remove(state_file, ec);
  util::log_info(util::strfmt("extracted %lld rows (%lld skipped) in %.1f s: %.0f images/s",
                              static_cast<long long>(result.rows),
                              static_cast<long long>(result.skipped), result.seconds,
                              record["images_per_second"].get<double>()));
  if (result.rows == 0) {
    throw std::runtime_error("none of the " + std::to_string(inputs.size()) +
                             " inputs could be decoded (" + meta_file.string() + " lists why)");
  }
  return result;
}

}  // namespace aefx::extract
