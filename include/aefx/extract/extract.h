#pragma once
// `aefx extract`: the frozen encoder's codes for any images, written to an output folder as they
// are computed: OUT/features.npy (N x D rows, float32 or float16), OUT/index.csv (row,path,label:
// row i of features.npy is line i of the index) and, once complete, OUT/meta.json. Image files
// are decoded on worker threads ahead of the model; an unreadable file is skipped (listed in
// meta.json) and takes no row; a stopped extraction continues from its last complete batch.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/models/torchscript.h"

namespace aefx::extract {

/// What to extract from, one row per input that decodes: image files, or images in memory.
struct Inputs {
  std::vector<std::string> names;   ///< index.csv's path per input: the file, or "FILE#record"
  std::vector<std::string> labels;  ///< class name per input; "" when unknown
  /// uint8 N x C x H x W when the inputs are in memory (a data set's records); undefined when
  /// `names` are image files, decoded while extracting.
  torch::Tensor images;
  std::string source;  ///< what they are, in words, for meta.json and the log

  int64_t size() const { return static_cast<int64_t>(names.size()); }
};

/// Image files named on the command line: a file is taken as given, a folder is searched
/// recursively for image files (data::find_images; sorted), in the order of `paths`. Labels are
/// unknown. Throws std::invalid_argument for no paths or a path that does not exist, and
/// std::runtime_error naming the folder when a folder holds no image file, or when this build
/// cannot decode images.
Inputs inputs_from_paths(const std::vector<std::string>& paths);

/// A data set's split (`cfg.format`, `cfg.root`; images sized to `cfg.image_size`): CIFAR-10
/// binary and IDX records loaded into memory, named "FILE#record"; an image folder's files
/// listed, decoded while extracting. Labels are the class names.
Inputs inputs_from_data(const config::DataConfig& cfg, data::Split split);

/// The exported encoder `model` names: a run folder (its encoder.pt) or an encoder.pt file.
std::string encoder_file(const std::string& model);

/// The files of an output folder.
inline constexpr const char* kFeaturesFile = "features.npy";
inline constexpr const char* kIndexFile = "index.csv";
inline constexpr const char* kMetaFile = "meta.json";
/// Where a running extraction keeps its position (inputs done, rows, bytes of the index); gone
/// once meta.json is written.
inline constexpr const char* kStateFile = "progress.json";

struct Options {
  std::string out;                          ///< the output folder
  torch::ScalarType dtype = torch::kFloat;  ///< of features.npy: torch::kFloat or torch::kHalf
  int64_t batch_size = 256;                 ///< images per forward pass (memory, not the result)
  /// The encoder's compute dtype: torch::kFloat (the codes of encoder.pt, within float rounding)
  /// or torch::kBFloat16 (autocast, util/precision.h: about 2x faster where bf16 is native,
  /// codes within bf16 rounding).
  torch::ScalarType precision = torch::kFloat;
  int64_t workers = 0;  ///< threads decoding image files; 0: one per core
  bool resume = false;  ///< continue the extraction in `out`
};

struct Result {
  int64_t inputs = 0, rows = 0, skipped = 0;
  int64_t resumed_from = -1;  ///< input a resumed extraction continued at; -1: a fresh one
  bool already_complete = false;
  double seconds = 0;  ///< this process's extraction time
};

/// Extracts `inputs` with `encoder` (on its device, frozen here: ExportedModel::freeze) into
/// options.out, each image converted to the model's channels (data::to_channels) and, for files,
/// size. Without options.resume
/// an existing non-empty out is refused (std::invalid_argument); with it, an extraction stopped
/// there continues after its last complete batch (the same model, inputs and dtype, else
/// std::invalid_argument says which differs), and a complete one is left as it is. Stops with
/// util::Interrupted between batches once SIGINT or SIGTERM arrived, its state saved. A failed
/// write (a full disk) throws std::runtime_error with the rows and index written so far
/// consistent and resumable. Throws std::runtime_error at the end, after meta.json, when no input
/// decoded at all.
Result extract(models::ExportedModel& encoder, const Inputs& inputs, const Options& options);

}  // namespace aefx::extract
