#pragma once
// Typed run configuration. YAML is read once into these structs and validated at load:
// an unknown key, a wrong type or an out-of-range value throws std::invalid_argument naming
// the key path. There is no global config; every part of aefx gets what it needs passed in.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aefx::config {

// Config choices: each one an enum class with one table of names.
/// One name of an enum value, as the config spells it.
template <class E>
struct EnumName {
  E value;
  const char* name;
};

/// The name table of each config enum (specialised below): parsing, printing, error messages
/// and the listing of known values all read it.
template <class E>
struct EnumNames;

/// data.format: where the images come from.
enum class DataFormat { kCifar10Binary, kImageFolder, kIdx };
template <>
struct EnumNames<DataFormat> {
  static constexpr EnumName<DataFormat> table[] = {{DataFormat::kCifar10Binary, "cifar10-binary"},
                                                   {DataFormat::kImageFolder, "image-folder"},
                                                   {DataFormat::kIdx, "idx"}};
};

/// model.type: the autoencoder architecture.
enum class ModelType { kConv, kDense, kPatch };
template <>
struct EnumNames<ModelType> {
  static constexpr EnumName<ModelType> table[] = {
      {ModelType::kConv, "conv"}, {ModelType::kDense, "dense"}, {ModelType::kPatch, "patch"}};
};

/// model.activation: after every hidden and code layer of a dense autoencoder.
enum class Activation { kRelu, kTanh, kSigmoid };
template <>
struct EnumNames<Activation> {
  static constexpr EnumName<Activation> table[] = {
      {Activation::kRelu, "relu"}, {Activation::kTanh, "tanh"}, {Activation::kSigmoid, "sigmoid"}};
};

/// model.output_activation: what the reconstruction goes through.
enum class OutputActivation { kIdentity, kSigmoid };
template <>
struct EnumNames<OutputActivation> {
  static constexpr EnumName<OutputActivation> table[] = {{OutputActivation::kIdentity, "identity"},
                                                         {OutputActivation::kSigmoid, "sigmoid"}};
};

/// pretrain.optimizer and classify.optimizer.
enum class Optimizer { kAdamW, kAdam, kSgd };
template <>
struct EnumNames<Optimizer> {
  static constexpr EnumName<Optimizer> table[] = {
      {Optimizer::kAdamW, "adamw"}, {Optimizer::kAdam, "adam"}, {Optimizer::kSgd, "sgd"}};
};

/// pretrain.schedule and classify.schedule: the learning rate over the steps.
enum class Schedule { kCosine, kConstant };
template <>
struct EnumNames<Schedule> {
  static constexpr EnumName<Schedule> table[] = {{Schedule::kCosine, "cosine"},
                                                 {Schedule::kConstant, "constant"}};
};

/// classify.pooling: what each grid cell of a feature map becomes.
enum class Pooling { kAvg, kMax, kAvgMax };
template <>
struct EnumNames<Pooling> {
  static constexpr EnumName<Pooling> table[] = {
      {Pooling::kAvg, "avg"}, {Pooling::kMax, "max"}, {Pooling::kAvgMax, "avgmax"}};
};

/// distributed.backend.
enum class Backend { kAuto, kGloo, kNccl };
template <>
struct EnumNames<Backend> {
  static constexpr EnumName<Backend> table[] = {
      {Backend::kAuto, "auto"}, {Backend::kGloo, "gloo"}, {Backend::kNccl, "nccl"}};
};

/// precision: the dtype the training steps, code extraction and evaluation compute in (see
/// util/precision.h); auto = bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere.
enum class Precision { kAuto, kFp32, kBf16 };
template <>
struct EnumNames<Precision> {
  static constexpr EnumName<Precision> table[] = {
      {Precision::kAuto, "auto"}, {Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}};
};

/// The config's name of `value`.
template <class E>
constexpr const char* name_of(E value) {
  for (const auto& n : EnumNames<E>::table)
    if (n.value == value) return n.name;
  return "?";
}

/// The value named `name`, or nullopt when the table has no such name.
template <class E>
std::optional<E> from_name(std::string_view name) {
  for (const auto& n : EnumNames<E>::table)
    if (name == n.name) return n.value;
  return std::nullopt;
}

/// Every name of E in table order, joined by `separator`, e.g. "conv dense".
template <class E>
std::string names_of(const std::string& separator = " ") {
  std::string out;
  for (const auto& n : EnumNames<E>::table) out += (out.empty() ? "" : separator) + n.name;
  return out;
}

/// Where the images come from and how they are split.
struct DataConfig {
  DataFormat format = DataFormat::kCifar10Binary;
  std::string root = "data/cifar10";  ///< folder holding the data (docs/data.md)
  int64_t val_size = 5000;            ///< images held out of train for validation
  int64_t limit_train = 0;            ///< use only this many training images (0 = all)
  int64_t limit_test = 0;             ///< use only this many test images (0 = all)
  int64_t image_size = 32;            ///< images are resized to image_size x image_size
  /// idx only: the names of labels 0, 1, ... (empty = "0".."9"; a label without a name is an
  /// error).
  std::vector<std::string> class_names{};
  /// A folder of images of any layout (searched recursively; names and class folders ignored)
  /// that pretrain uses besides the labelled train split; "" = none. Decoded once into a uint8
  /// cache file (data/image_cache.h) read through a memory map.
  std::string unlabeled{};
  bool unlabeled_only = false;  ///< pretrain on data.unlabeled alone (classify still uses labels)
  /// Where the cache of data.unlabeled lives; "" = data.unlabeled/.aefx-cache.
  std::string cache_dir{};
};

/// Image channels a data format gives: 1 (grey) for idx, 3 (RGB) for the others.
int64_t input_channels(const DataConfig& data);

/// Autoencoder architecture: convolutional (widths, blocks, decoder_*), dense (hidden,
/// code_size, activation) or a patch dictionary (whiten_patch, atoms, threshold);
/// output_activation applies to conv and dense.
struct ModelConfig {
  ModelType type = ModelType::kConv;
  std::vector<int64_t> widths{32, 64, 128};  ///< conv: channels per encoder stage
  std::vector<int64_t> blocks{1, 1, 1};      ///< conv-BN-ReLU blocks per stage
  int64_t decoder_blocks = 1;                ///< conv blocks per decoder stage
  double decoder_width = 1.0;                ///< decoder channels = encoder channels * this
  /// dense: encoder hidden layer sizes between the input and the code (the decoder mirrors
  /// them); empty = input -> code -> input.
  std::vector<int64_t> hidden{};
  int64_t code_size = 128;                    ///< dense: values in the code (the bottleneck)
  Activation activation = Activation::kRelu;  ///< dense: after every hidden and the code layer
  /// The reconstruction in pixel units.
  OutputActivation output_activation = OutputActivation::kIdentity;
  /// conv, patch: side of the patches of a frozen ZCA-whitening stem fitted to the training
  /// images (odd; 0 = no stem, conv only). The encoder sees, and the decoder reconstructs, the
  /// whitened image.
  int64_t whiten_patch = 0;
  /// The stem's ridge: eigenvalues below whiten_eps x their mean are damped, not amplified.
  double whiten_eps = 0.1;
  /// The stem removes each patch's mean (over its C k^2 values) before whitening it: the
  /// encoder sees no patch brightness, only its variation.
  bool whiten_center = false;
  /// patch: dictionary atoms (unit vectors in the whitened patch space); the code has 2 x atoms
  /// channels (each response's positive and negative part).
  int64_t atoms = 1600;
  /// patch: the soft threshold of the responses (in whitened units).
  double threshold = 0.25;
  /// patch: each position's responses divided by its whitened patch's norm, regularised by the
  /// training patches' mean squared norm E: s sqrt(2 E / (|x|^2 + E)), so a patch of average
  /// energy keeps its responses and the code depends on local contrast far less (Coates, Lee &
  /// Ng normalise each patch's contrast before whitening it).
  bool normalize_patches = false;
};

/// Autoencoder pretraining (reconstruction loss only, no labels).
struct PretrainConfig {
  int64_t epochs = 10;  ///< 0 = no training: the random encoder, as a control (docs/results.md)
  /// Images each epoch trains on: the first ones of the epoch's shuffled order (a fresh random
  /// subset every epoch); 0 = all of them.
  int64_t epoch_images = 0;
  int64_t batch_size = 128;
  double lr = 2e-3;
  Optimizer optimizer = Optimizer::kAdamW;
  double weight_decay = 1e-4;
  Schedule schedule = Schedule::kCosine;
  double warmup_epochs = 0.0;
  double mask_ratio = 0.0;  ///< fraction of input patches zeroed (masked autoencoder)
  int64_t mask_patch = 4;   ///< patch side in pixels
  double noise = 0.0;       ///< std of Gaussian input noise (denoising autoencoder)
  bool augment = true;      ///< random flip + random crop with padding
  int64_t crop_padding = 4;
};

/// Head training on frozen latent codes.
struct ClassifyConfig {
  int64_t epochs = 20;
  int64_t batch_size = 256;
  double lr = 1e-3;
  Optimizer optimizer = Optimizer::kAdamW;
  double weight_decay = 1e-4;
  Schedule schedule = Schedule::kCosine;
  std::vector<int64_t> hidden{};  ///< hidden layer sizes; empty = linear head
  double dropout = 0.0;
  double label_smoothing = 0.0;
  /// Per encoder stage: g -> the map is pooled to a g x g grid of cells; 0 = stage unused.
  std::vector<int64_t> pool_grids{4, 2, 1};
  Pooling pooling = Pooling::kAvg;  ///< each grid cell: avg, max or avgmax (both, concatenated)
  bool flip_codes = true;           ///< also cache codes of horizontally flipped train images
  /// Randomly shifted (by up to crop_padding pixels) and mirrored copies of each training image
  /// whose codes are cached too: more views for the head, at one code cache of the training
  /// set each (and its encoding time).
  int64_t augmented_copies = 0;
  int64_t crop_padding = 4;       ///< the shift's bound, zero padded as pretrain.crop_padding
  int64_t code_batch_size = 500;  ///< batch size for computing codes
  /// Labelled train images per class the head (and the baseline, and the k-NN evaluation) use:
  /// a seeded, class-balanced subset; 0 = all. Validation is unchanged.
  int64_t labels_per_class = 0;
};

/// Test-set evaluation.
struct EvaluateConfig {
  int64_t batch_size = 500;
  /// k-NN accuracy of the frozen codes (Wu et al. 2018): the k nearest labelled train codes by
  /// cosine similarity vote with weights exp(similarity / knn_temperature); 0 = not measured.
  int64_t knn_k = 200;
  double knn_temperature = 0.07;
};

/// TorchScript export.
struct ExportConfig {
  std::string device = "cpu";  ///< device the exported tensors live on (cpu loads anywhere)
  double tolerance = 1e-4;     ///< max |native - exported| logits allowed by the export check
};

/// The pictures and report a run writes into its folder (docs/architecture.md, the run-folder
/// contract).
struct ReportConfig {
  bool pictures = true;              ///< reconstructions, curves, confusion and latents PNGs
  int64_t reconstruction_every = 5;  ///< redraw reconstructions.png every this many epochs
  int64_t latent_points = 5000;      ///< test codes drawn in latents.png (all go into the PCA)
};

/// Data-parallel training over several processes (docs/distributed.md).
/// Used only when aefx runs under torchrun's variables (RANK, WORLD_SIZE, ...) or `aefx launch`.
struct DistributedConfig {
  Backend backend = Backend::kAuto;  ///< auto: nccl on CUDA, else gloo
  double timeout = 300;              ///< seconds a rank waits for the others before it gives up
};

/// A whole run.
struct Config {
  std::string name = "run";
  std::string device = "auto";  ///< auto | cpu | cuda | cuda:N
  int64_t seed = 0;
  int64_t threads = 0;  ///< intra-op CPU threads; 0 = all cores
  /// Compute dtype of the heavy operations (weights, optimizer state and losses stay fp32).
  Precision precision = Precision::kAuto;
  std::string output_dir = "models";
  std::vector<std::string> stages{"pretrain", "classify", "evaluate", "export"};
  DataConfig data;
  ModelConfig model;
  PretrainConfig pretrain;
  ClassifyConfig classify;
  EvaluateConfig evaluate;
  ExportConfig export_;  ///< YAML key "export" (a C++ keyword)
  ReportConfig report;
  DistributedConfig distributed;
};

/// The stage names a config may list, in pipeline order.
const std::vector<std::string>& known_stages();

/// Every valid key path, e.g. "pretrain.epochs", in documentation order.
std::vector<std::string> known_keys();

/// The names a choice key accepts (e.g. "model.type": conv, dense); empty for other keys.
std::vector<std::string> known_values(const std::string& key);

/// Marks on config keys, for comparing two configs (see KeyFilter).
enum KeyMark : unsigned {
  /// What runs and how fast or what is drawn, not what is computed: stages, threads, report.*.
  kNoEffect = 1u << 0,
  /// How the processes of a run find each other: distributed.*.
  kLaunch = 1u << 1,
  /// May differ between the machines (ranks) of one run: device, data.root, output_dir.
  kPerMachine = 1u << 2,
  /// What the raw-pixel baseline depends on: seed, data.*, classify.*.
  kBaselineInput = 1u << 3,
};

/// The keys with every mark of `require` and none of `exclude`.
struct KeyFilter {
  unsigned require = 0;
  unsigned exclude = 0;
};
/// --resume continues only under the config that started the run.
inline constexpr KeyFilter kResumeKeys{0, kNoEffect | kLaunch};
/// Every rank of a run trains the same model the same way.
inline constexpr KeyFilter kRankKeys{0, kNoEffect | kPerMachine};
/// baseline.json holds for a config when these are the same.
inline constexpr KeyFilter kBaselineKeys{kBaselineInput, 0};

/// The keys `filter` selects, in documentation order.
std::vector<std::string> keys_where(KeyFilter filter);

/// A key whose value differs between two configs, with both values as get_value gives them.
struct Difference {
  std::string key;
  std::string a;
  std::string b;
};

/// The keys `filter` selects whose values differ between `a` and `b`, in documentation order.
std::vector<Difference> differences(const Config& a, const Config& b, KeyFilter filter);

/// Loads and validates a YAML file, applying `overrides` ("key=value", as --set) first. Throws
/// std::invalid_argument naming the file when it is missing, unreadable, a directory, empty (no
/// keys) or not a mapping at the top level, as for any invalid key.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// Parses and validates YAML text; `source` names it in error messages.
Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    const std::string& source = "<config>");

/// Serialises every key (the resolved config) as YAML that parse_config reads back.
std::string to_yaml(const Config& config);

/// One key's value as YAML text (lists in flow style), e.g. for `aefx config --get`.
std::string get_value(const Config& config, const std::string& key);

/// Splits "a,b,c" into stage names and checks each one.
std::vector<std::string> parse_stage_list(const std::string& csv);

/// The valid key closest to `key` by edit distance (for "did you mean" hints).
std::string nearest_key(const std::string& key);

}  // namespace aefx::config
