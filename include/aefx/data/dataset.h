#pragma once
// Data sets held in memory as one uint8 tensor, plus labels and class names. Loaders for the
// official CIFAR-10 binary layout and for image folders; deterministic splits; batch
// augmentation that runs on whole batches on the training device.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aefx/config/config.h"

namespace aefx::data {

enum class Split { kTrain, kTest };

/// Images as uint8 N x C x H x W (C = 3: RGB, C = 1: grey), labels as int64 N, and the class
/// names.
struct Dataset {
  torch::Tensor images;
  torch::Tensor labels;
  std::vector<std::string> class_names;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  /// The rows at `index` (an int64 tensor), sharing class names.
  Dataset subset(const torch::Tensor& index) const;
};

/// The CIFAR-10 class names, in label order.
const std::vector<std::string>& cifar10_class_names();

/// Bytes per record of the CIFAR-10 binary layout (label byte + 3 x 32 x 32 pixels) and records
/// per official batch file.
inline constexpr int64_t kCifarRecordBytes = 1 + 3 * 32 * 32;
inline constexpr int64_t kCifarRecordsPerBatch = 10000;

/// Parses one CIFAR-10 batch file held in memory; `name` names it in errors. Throws
/// std::runtime_error for an empty file, a size that is not a multiple of 3073 bytes (truncated,
/// trailing bytes), more than 10,000 records (oversized) or a label outside 0..9.
Dataset parse_cifar10_batch(const uint8_t* data, size_t size, const std::string& name);

/// Reads the official binary layout. `root` is the folder holding cifar-10-batches-bin/ or that
/// folder itself. Throws std::runtime_error naming the file for a missing batch file or one that
/// parse_cifar10_batch rejects. Other files in the folder are ignored with a warning naming them.
Dataset load_cifar10_binary(const std::string& root, Split split);

/// Largest IDX content (after decompression) load_idx reads: 1 GiB.
inline constexpr int64_t kIdxMaxBytes = int64_t{1} << 30;

/// Parses one unsigned-byte IDX file held in memory (decompressed) with `dims` dimensions (3:
/// images N x rows x cols, 1: labels N); `name` names it in errors. Throws std::runtime_error
/// for a wrong magic number, value type or dimension count, a header or data shorter or longer
/// than the dimensions declare (truncated, trailing bytes), or an empty dimension.
torch::Tensor parse_idx(const uint8_t* data, size_t size, int64_t dims, const std::string& name);

/// The IDX images file load_idx reads for `split` (train-images-idx3-ubyte or
/// t10k-images-idx3-ubyte, plain or .gz) under `root`; throws as load_idx does when it is missing.
std::string idx_images_file(const std::string& root, Split split);

/// Reads MNIST-format IDX files from `root`: {train,t10k}-images-idx3-ubyte and
/// {train,t10k}-labels-idx1-ubyte, each plain or .gz (also with '.' before idx, as some copies
/// name them). Images come as N x 1 x rows x cols. `class_names` names labels 0, 1, ...; empty
/// means "0".."9". Throws std::runtime_error naming the file for a missing or malformed file,
/// images and labels of different counts, or a label without a class name.
Dataset load_idx(const std::string& root, Split split, const std::vector<std::string>& class_names);

/// Whether `file` has an image extension this reader decodes (.png, .jpg, .jpeg, .bmp, .ppm, .pgm,
/// .pbm, .tif, .tiff, .webp; any case).
bool is_image_file_name(const std::string& file);

/// The image files under `dir`, searched recursively (symbolic links followed), sorted by path;
/// `others`, when given, counts the files skipped for their names. Throws std::runtime_error
/// naming `dir` when it is not a folder or cannot be listed.
std::vector<std::string> find_images(const std::string& dir, int64_t* others = nullptr);

/// The files of an image folder's split, in the order load_image_folder reads them, with their
/// labels (indices into class_names, the sorted class folders).
struct ImageList {
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  std::vector<std::string> class_names;
};

/// Lists root/{train,test}/<class>/<image> without decoding: the checks and warnings of
/// load_image_folder (missing folder, no classes, test classes that differ from train's, a
/// class with no images, non-image files).
ImageList list_image_folder(const std::string& root, Split split);

/// Whether this build decodes image files (it was built with OpenCV).
bool can_decode_images();

/// Where each record of a CIFAR-10 binary or IDX split comes from, as "FILE#record" (0-based
/// within its file), for the `n` records load_split read (in that order, before any limit).
std::vector<std::string> record_names(const config::DataConfig& cfg, Split split, int64_t n);

/// Reads root/{train,test}/<class>/<image>, decoding in parallel with OpenCV, converting to
/// RGB and resizing to size x size. Classes are the sorted sub-folder names; files that are
/// not images (by extension) are skipped with a warning that counts them.
Dataset load_image_folder(const std::string& root, Split split, int64_t size);

/// Decodes one image file with OpenCV to uint8 3 x size x size RGB (grey and RGBA converted,
/// resized). Throws std::runtime_error naming the file when it is missing or undecodable.
torch::Tensor decode_image(const std::string& file, int64_t size);

/// uint8 images N x C x H x W with `channels` channels: RGB to grey by the ITU-R BT.601 luma
/// weights (as OpenCV's RGB2GRAY), grey to RGB by repeating it; unchanged when C == channels.
torch::Tensor to_channels(const torch::Tensor& images, int64_t channels);

/// Loads the split named by the config (format, root, image size, limit). A limit keeps a
/// seeded random subset, so a limited image folder still holds every class.
Dataset load_split(const config::DataConfig& cfg, Split split, uint64_t seed);

/// Splits off `val_size` images with a seeded permutation: returns {train, val}.
std::pair<Dataset, Dataset> split_validation(const Dataset& full, int64_t val_size, uint64_t seed);

/// The train/validation split every stage uses: the train split of `cfg.data` with
/// data.val_size images held out, both drawn from the run's seed (so the same images each time).
std::pair<Dataset, Dataset> load_train_val(const config::Config& cfg);

/// `per_class` images of each class of `ds`, drawn with a permutation seeded by `seed`, in the
/// order they have in `ds`; all of `ds` when per_class is 0. Throws std::invalid_argument naming
/// classify.labels_per_class and the class when a class has fewer images.
Dataset class_balanced_subset(const Dataset& ds, int64_t per_class, uint64_t seed);

/// What the classify head learns from: load_train_val with classify.labels_per_class applied to
/// the train part (validation unchanged). Classify, the baseline and the k-NN evaluation use it.
std::pair<Dataset, Dataset> load_labelled_train_val(const config::Config& cfg);

/// Per-channel sums of uint8 images added chunk by chunk, so that memory does not grow with the
/// number of images; mean and std in [0, 1] units (float tensors of C).
class ChannelMoments {
 public:
  /// Images per chunk for rows of `row_elements` values (C x H x W): about 4M values, 32 MB as
  /// the doubles the sums are taken in.
  static int64_t rows_per_chunk(int64_t row_elements);
  /// Adds a chunk of N x C x H x W uint8 images (any device).
  void add(const torch::Tensor& images);
  std::pair<torch::Tensor, torch::Tensor> mean_std() const;

 private:
  torch::Tensor sum_, sq_;
  double count_ = 0;
};

/// Per-channel mean and std of uint8 images, in [0, 1] units (float tensors of C).
std::pair<torch::Tensor, torch::Tensor> channel_stats(const torch::Tensor& images);

/// Random horizontal flip and random crop after zero padding by `pad` pixels, per image of a
/// batch B x C x H x W (float or uint8), on the batch's device, drawing from `gen` (by default
/// the global, seeded RNG).
torch::Tensor augment_batch(const torch::Tensor& batch, int64_t pad, bool flip,
                            c10::optional<at::Generator> gen = c10::nullopt);

/// The views of the training images whose codes the head learns from: the images, then their
/// mirror images when `mirrored`, then `copies` randomly shifted (by up to `pad` pixels, zero
/// padded) and randomly mirrored copies drawn from `seed`; the labels repeated to match.
Dataset training_views(const Dataset& d, bool mirrored, int64_t copies, int64_t pad, uint64_t seed);

/// The training views the classify head (and the baseline's) learns from, as cfg.classify asks
/// (flip_codes, augmented_copies, crop_padding), drawn from a stream of the run's seed of their
/// own: the same views on every rank and when a run resumes.
Dataset head_training_views(const Dataset& train, const config::Config& cfg);

/// Converts uint8 images to float in [0, 1] on `device`, in channels-last layout.
torch::Tensor to_float(const torch::Tensor& images, const torch::Device& device);

}  // namespace aefx::data
