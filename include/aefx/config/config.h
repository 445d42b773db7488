#pragma once
// Typed run configuration. YAML is read once into these structs and validated at load:
// an unknown key, a wrong type or an out-of-range value throws std::invalid_argument naming
// the key path. There is no global config; every part of aefx gets what it needs passed in.
#include <cstdint>
#include <string>
#include <vector>

namespace aefx::config {

/// Where the images come from and how they are split.
struct DataConfig {
  std::string format = "cifar10-binary";  ///< cifar10-binary | image-folder | idx
  std::string root = "data/cifar10";      ///< folder holding the data (see README)
  int64_t val_size = 5000;                ///< images held out of train for validation
  int64_t limit_train = 0;                ///< use only this many training images (0 = all)
  int64_t limit_test = 0;                 ///< use only this many test images (0 = all)
  int64_t image_size = 32;                ///< images are resized to image_size x image_size
  /// idx only: the names of labels 0, 1, ... (empty = "0".."9"; a label without a name is an
  /// error).
  std::vector<std::string> class_names{};
};

/// Image channels a data format gives: 1 (grey) for idx, 3 (RGB) for the others.
int64_t input_channels(const DataConfig& data);

/// Autoencoder architecture: convolutional (widths, blocks, decoder_*) or dense (hidden,
/// code_size, activation); output_activation applies to both.
struct ModelConfig {
  std::string type = "conv";                 ///< conv | dense
  std::vector<int64_t> widths{32, 64, 128};  ///< conv: channels per encoder stage
  std::vector<int64_t> blocks{1, 1, 1};      ///< conv-BN-ReLU blocks per stage
  int64_t decoder_blocks = 1;                ///< conv blocks per decoder stage
  double decoder_width = 1.0;                ///< decoder channels = encoder channels * this
  /// dense: encoder hidden layer sizes between the input and the code (the decoder mirrors
  /// them); empty = input -> code -> input.
  std::vector<int64_t> hidden{};
  int64_t code_size = 128;  ///< dense: values in the code (the bottleneck)
  std::string activation =
      "relu";  ///< dense: after every hidden and the code layer: relu | tanh | sigmoid
  std::string output_activation =
      "identity";  ///< reconstruction in pixel units: identity | sigmoid
};

/// Autoencoder pretraining (reconstruction loss only, no labels).
struct PretrainConfig {
  int64_t epochs = 10;  ///< 0 = no training: the random encoder, as a control (see README)
  int64_t batch_size = 128;
  double lr = 2e-3;
  std::string optimizer = "adamw";  ///< adamw | adam | sgd
  double weight_decay = 1e-4;
  std::string schedule = "cosine";  ///< cosine | constant
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
  std::string optimizer = "adamw";
  double weight_decay = 1e-4;
  std::string schedule = "cosine";
  std::vector<int64_t> hidden{};  ///< hidden layer sizes; empty = linear head
  double dropout = 0.0;
  double label_smoothing = 0.0;
  /// Per encoder stage: g -> the map is pooled to a g x g grid of cells; 0 = stage unused.
  std::vector<int64_t> pool_grids{4, 2, 1};
  std::string pooling = "avg";    ///< each grid cell: avg | max | avgmax (both, concatenated)
  bool flip_codes = true;         ///< also cache codes of horizontally flipped train images
  int64_t code_batch_size = 500;  ///< batch size for computing codes
};

/// Test-set evaluation.
struct EvaluateConfig {
  int64_t batch_size = 500;
};

/// TorchScript export.
struct ExportConfig {
  std::string device = "cpu";  ///< device the exported tensors live on (cpu loads anywhere)
  double tolerance = 1e-4;     ///< max |native - exported| logits allowed by the export check
};

/// The pictures and report a run writes into its folder (see README, "What a run writes").
struct ReportConfig {
  bool pictures = true;              ///< reconstructions, curves, confusion and latents PNGs
  int64_t reconstruction_every = 5;  ///< redraw reconstructions.png every this many epochs
  int64_t latent_points = 5000;      ///< test codes drawn in latents.png (all go into the PCA)
};

/// Data-parallel training over several processes (see README, "Several processes and machines").
/// Used only when aefx runs under torchrun's variables (RANK, WORLD_SIZE, ...) or `aefx launch`.
struct DistributedConfig {
  std::string backend = "auto";  ///< auto (nccl on CUDA, else gloo) | gloo | nccl
  double timeout = 300;          ///< seconds a rank waits for the others before it gives up
};

/// A whole run.
struct Config {
  std::string name = "run";
  std::string device = "auto";  ///< auto | cpu | cuda | cuda:N
  int64_t seed = 0;
  int64_t threads = 0;  ///< intra-op CPU threads; 0 = all cores
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
