#include "aefx/config/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "test_util.h"

namespace aefx::config {
namespace {

std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    parse_config(yaml, sets, "test.yaml");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Config, EmptyGivesDefaults) {
  const Config c = parse_config("", {}, "empty");
  EXPECT_EQ(c.device, "auto");
  EXPECT_EQ(c.output_dir, "models");
  EXPECT_EQ(c.stages, (std::vector<std::string>{"pretrain", "classify", "evaluate", "export"}));
  EXPECT_EQ(c.model.type, ModelType::kConv);
  EXPECT_EQ(c.model.widths.size(), c.classify.pool_grids.size());
}

TEST(Config, ShippedConfigsLoad) {
  for (const char* name : {"cifar10.yaml", "cifar10-cpu.yaml", "cifar10-cpu-conv.yaml",
                           "smoke.yaml", "mnist-dense.yaml", "fashion-mnist.yaml"}) {
    const auto path = std::filesystem::path(AEFX_SOURCE_DIR) / "configs" / name;
    EXPECT_NO_THROW(load_config(path.string())) << name;
  }
}

TEST(Config, ReadsNestedKeys) {
  const Config c = parse_config(
      "name: x\npretrain:\n  epochs: 7\n  lr: 0.5\nmodel:\n  widths: [4, 8]\n"
      "  blocks: [2, 1]\nclassify:\n  pool_grids: [1, 1]\n  hidden: []\n");
  EXPECT_EQ(c.name, "x");
  EXPECT_EQ(c.pretrain.epochs, 7);
  EXPECT_DOUBLE_EQ(c.pretrain.lr, 0.5);
  EXPECT_EQ(c.model.blocks, (std::vector<int64_t>{2, 1}));
  EXPECT_TRUE(c.classify.hidden.empty());
  const Config e = parse_config("export:\n  device: cuda:1\n  tolerance: 0.001\n");
  EXPECT_EQ(e.export_.device, "cuda:1");
  EXPECT_DOUBLE_EQ(e.export_.tolerance, 0.001);
  EXPECT_NE(error_of("export:\n  tolerance: 0\n").find("'export.tolerance'"), std::string::npos);
  EXPECT_NE(error_of("export:\n  devise: cpu\n").find("did you mean 'export.device'"),
            std::string::npos);
}

TEST(Config, UnknownKeyNamesNearest) {
  const auto msg = error_of("pretrain:\n  epoch: 3\n");
  EXPECT_NE(msg.find("'pretrain.epoch'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'pretrain.epochs'"), std::string::npos) << msg;
  EXPECT_NE(error_of("devcie: cpu\n").find("did you mean 'device'"), std::string::npos);
}

TEST(Config, WrongTypeNamesKeyExpectedAndFound) {
  const auto msg = error_of("pretrain:\n  epochs: abc\n");
  EXPECT_NE(msg.find("'pretrain.epochs'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("an integer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'abc'"), std::string::npos) << msg;
  EXPECT_NE(error_of("model:\n  widths: 5\n").find("a list of integers"), std::string::npos);
  EXPECT_NE(error_of("pretrain: 3\n").find("a mapping"), std::string::npos);
}

TEST(Config, OutOfRangeValues) {
  EXPECT_NE(error_of("pretrain:\n  epochs: -1\n")
                .find("'pretrain.epochs': expected a value >= 0, found -1"),
            std::string::npos);
  EXPECT_NE(error_of("classify:\n  epochs: 0\n")
                .find("'classify.epochs': expected a value >= 1, found 0"),
            std::string::npos);
  EXPECT_NE(error_of("pretrain:\n  mask_ratio: 1.0\n").find("'pretrain.mask_ratio'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  widths: []\n").find("'model.widths'"), std::string::npos);
  EXPECT_NE(error_of("device: gpu\n").find("'device'"), std::string::npos);
  EXPECT_NE(error_of("classify:\n  pooling: median\n").find("'classify.pooling'"),
            std::string::npos);
  EXPECT_NE(error_of("data:\n  format: png\n").find("cifar10-binary"), std::string::npos);
  EXPECT_NE(error_of("stages: [pretrain, train]\n").find("'stages'"), std::string::npos);
}

TEST(Config, CrossFieldChecks) {
  EXPECT_NE(error_of("model:\n  widths: [4, 8]\n  blocks: [1]\nclassify:\n  pool_grids: [1, 1]\n")
                .find("'model.blocks'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  widths: [4, 8]\n  blocks: [1, 1]\n").find("'classify.pool_grids'"),
            std::string::npos);
  EXPECT_NE(error_of("classify:\n  pool_grids: [0, 0, 0]\n").find("at least one stage"),
            std::string::npos);
  EXPECT_NE(error_of("classify:\n  pool_grids: [4, 2, 9]\n").find("must be <= 8"),
            std::string::npos);
}

TEST(Config, WhiteningStemIsForConvModelsWithOddPatchesAndLinearOutput) {
  const auto c = config::parse_config("model:\n  whiten_patch: 3\n  whiten_eps: 0.05\n");
  EXPECT_EQ(c.model.whiten_patch, 3);
  EXPECT_DOUBLE_EQ(c.model.whiten_eps, 0.05);
  EXPECT_EQ(config::parse_config("").model.whiten_patch, 0);  // no stem unless asked
  EXPECT_NE(error_of("model:\n  whiten_patch: 4\n")
                .find("config key 'model.whiten_patch': expected 0 or an odd side <= "
                      "data.image_size, found 4"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  whiten_patch: 33\n").find("'model.whiten_patch'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  whiten_patch: -1\n").find("'model.whiten_patch'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  whiten_eps: 0\n").find("'model.whiten_eps'"), std::string::npos);
  EXPECT_NE(error_of("model:\n  type: dense\n  whiten_patch: 3\n")
                .find("'model.whiten_patch': a stem for conv and patch models"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  whiten_patch: 3\n  output_activation: sigmoid\n")
                .find("'model.output_activation': expected identity"),
            std::string::npos);
}

TEST(Config, PatchModelsNeedAStemAndOneGrid) {
  const auto c = config::parse_config(
      "model:\n  type: patch\n  whiten_patch: 7\n  atoms: 64\n  threshold: 0.5\n"
      "classify:\n  pool_grids: [2]\npretrain:\n  epoch_images: 4096\n");
  EXPECT_EQ(c.model.type, config::ModelType::kPatch);
  EXPECT_EQ(c.model.atoms, 64);
  EXPECT_DOUBLE_EQ(c.model.threshold, 0.5);
  EXPECT_EQ(c.pretrain.epoch_images, 4096);
  EXPECT_EQ(config::parse_config("").pretrain.epoch_images, 0);  // every image, unless asked
  EXPECT_NE(error_of("model:\n  type: patch\nclassify:\n  pool_grids: [2]\n")
                .find("config key 'model.whiten_patch': model.type patch needs"),
            std::string::npos);
  // 32 - 7 + 1 = 26 positions a side.
  EXPECT_NE(error_of("model:\n  type: patch\n  whiten_patch: 7\nclassify:\n  pool_grids: [4, 2]\n")
                .find("config key 'classify.pool_grids': model.type patch has one 26x26 map, so "
                      "expected [g] with 1 <= g <= 26, found [4, 2]"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  type: patch\n  whiten_patch: 7\nclassify:\n  pool_grids: [27]\n")
                .find("'classify.pool_grids'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  atoms: 0\n").find("'model.atoms'"), std::string::npos);
  EXPECT_NE(error_of("model:\n  whiten_center: true\n")
                .find("config key 'model.whiten_center': centres the whitening stem's patches"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  threshold: -1\n").find("'model.threshold'"), std::string::npos);
  EXPECT_NE(error_of("model:\n  normalize_patches: true\n")
                .find("config key 'model.normalize_patches': normalises a patch dictionary's "
                      "responses, so it needs model.type patch, found conv"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  normalize_patches: maybe\n").find("'model.normalize_patches'"),
            std::string::npos);
  EXPECT_NE(error_of("pretrain:\n  epoch_images: -1\n").find("'pretrain.epoch_images'"),
            std::string::npos);
}

TEST(Config, DenseModelsAndIdxData) {
  // A dense model has one code: the conv checks (blocks per width, pool_grids) do not apply.
  const auto c = config::parse_config(
      "model:\n  type: dense\n  widths: [4, 8]\n  hidden: [64, 32]\n  code_size: 16\n"
      "  output_activation: sigmoid\nclassify:\n  pool_grids: [9]\n"
      "data:\n  format: idx\n  image_size: 28\n  class_names: [a, b]\n",
      {}, "test.yaml");
  EXPECT_EQ(c.model.type, config::ModelType::kDense);
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(c.model.code_size, 16);
  EXPECT_EQ(c.model.activation, config::Activation::kRelu);
  EXPECT_EQ(c.data.class_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(config::input_channels(c.data), 1);
  EXPECT_EQ(config::input_channels(config::DataConfig{}), 3);
  EXPECT_EQ(config::to_yaml(config::parse_config(config::to_yaml(c))), config::to_yaml(c));
  EXPECT_NE(error_of("model:\n  type: mlp\n").find("'model.type': expected one of conv dense"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  type: dense\n  code_size: 0\n").find("'model.code_size'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  activation: gelu\n").find("'model.activation'"), std::string::npos);
  EXPECT_NE(error_of("model:\n  output_activation: tanh\n").find("'model.output_activation'"),
            std::string::npos);
  EXPECT_NE(error_of("data:\n  class_names: [cat, dog]\n")
                .find("'data.class_names': only for data.format idx"),
            std::string::npos);
  EXPECT_NE(error_of("data:\n  format: idx\n  class_names: [cat, cat]\n")
                .find("'data.class_names': expected a list of distinct"),
            std::string::npos);
  EXPECT_NE(error_of("data:\n  format: idx\n  class_names: [cat, '']\n").find("'data.class_names'"),
            std::string::npos);
}

TEST(Config, MalformedYamlGivesLineAndColumn) {
  const auto msg = error_of("name: x\npretrain:\n  epochs: [1, 2\n");
  EXPECT_NE(msg.find("test.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
}

TEST(Config, SetOverridesWithSameValidation) {
  const Config c = parse_config("pretrain:\n  epochs: 3\n",
                                {"pretrain.epochs=5", "device=cpu", "model.widths=[4, 8, 16]"});
  EXPECT_EQ(c.pretrain.epochs, 5);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.model.widths, (std::vector<int64_t>{4, 8, 16}));
  EXPECT_NE(error_of("", {"pretrain.epochs"}).find("--set expects key=value"), std::string::npos);
  EXPECT_NE(error_of("", {"pretrain.epoch=3"}).find("did you mean 'pretrain.epochs'"),
            std::string::npos);
  EXPECT_NE(error_of("", {"pretrain.epochs=-1"}).find("'pretrain.epochs'"), std::string::npos);
  EXPECT_NE(error_of("", {"pretrain.epochs=x"}).find("an integer"), std::string::npos);
}

TEST(Config, ResolvedYamlRoundTrips) {
  Config c =
      parse_config("name: rt\nclassify:\n  hidden: [64, 32]\n  dropout: 0.25\n", {"seed=42"});
  const std::string y = to_yaml(c);
  const Config back = parse_config(y, {}, "resolved");
  EXPECT_EQ(to_yaml(back), y);
  EXPECT_EQ(back.seed, 42);
  EXPECT_EQ(back.classify.hidden, (std::vector<int64_t>{64, 32}));
  EXPECT_DOUBLE_EQ(back.classify.dropout, 0.25);
  EXPECT_EQ(get_value(back, "classify.hidden"), "[64, 32]");
  EXPECT_EQ(get_value(back, "name"), "rt");
}

TEST(Config, StageList) {
  EXPECT_EQ(parse_stage_list("classify,evaluate"),
            (std::vector<std::string>{"classify", "evaluate"}));
  EXPECT_THROW(parse_stage_list("classify,train"), std::invalid_argument);
  EXPECT_THROW(parse_stage_list(""), std::invalid_argument);
}

TEST(Config, MissingFileIsAConfigError) {
  try {
    load_config("/nonexistent/aefx.yaml");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/aefx.yaml"), std::string::npos);
  }
}

// A path that is not a YAML mapping is refused by name, never run with every default.
TEST(Config, FileThatIsNotAMappingIsAConfigError) {
  const aefx::testing::TempDir dir;
  auto error_of_file = [](const std::filesystem::path& path) -> std::string {
    try {
      load_config(path.string());
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of_file(dir.path()),
            "config file " + dir.path().string() +
                " is a directory (expected a YAML file, e.g. configs/cifar10.yaml)");
  aefx::testing::write_bytes(dir / "empty.yaml", "");
  EXPECT_EQ(error_of_file(dir / "empty.yaml"),
            "config file " + (dir / "empty.yaml").string() +
                " holds no config keys (expected a YAML mapping, e.g. name: x)");
  aefx::testing::write_bytes(dir / "comments.yaml", "# only a comment\n");
  EXPECT_NE(error_of_file(dir / "comments.yaml").find("comments.yaml holds no config keys"),
            std::string::npos);
  aefx::testing::write_bytes(dir / "list.yaml", "- name: x\n");
  EXPECT_EQ(error_of_file(dir / "list.yaml"),
            (dir / "list.yaml").string() +
                ": expected a mapping of config keys at the top level, found a list");
  aefx::testing::write_bytes(dir / "scalar.yaml", "cifar10\n");
  EXPECT_NE(error_of_file(dir / "scalar.yaml").find("scalar.yaml: expected a mapping"),
            std::string::npos);
  aefx::testing::write_bytes(dir / "ok.yaml", "name: x\n");
  EXPECT_EQ(load_config((dir / "ok.yaml").string()).name, "x");
}

TEST(Config, ChoicesAreEnumsWithOneNameTable) {
  EXPECT_EQ(names_of<DataFormat>(", "), "cifar10-binary, image-folder, idx");
  EXPECT_EQ(from_name<Pooling>("avgmax"), Pooling::kAvgMax);
  EXPECT_FALSE(from_name<Pooling>("median").has_value());
  EXPECT_EQ(std::string(name_of(Backend::kNccl)), "nccl");
  EXPECT_EQ(known_values("classify.pooling"), (std::vector<std::string>{"avg", "max", "avgmax"}));
  EXPECT_EQ(known_values("pretrain.optimizer"), (std::vector<std::string>{"adamw", "adam", "sgd"}));
  EXPECT_EQ(known_values("precision"), (std::vector<std::string>{"auto", "fp32", "bf16"}));
  EXPECT_EQ(parse_config("").precision, Precision::kAuto);
  EXPECT_EQ(parse_config("precision: bf16\n").precision, Precision::kBf16);
  EXPECT_NE(error_of("precision: fp16\n").find("'precision'"), std::string::npos);
  EXPECT_TRUE(known_values("seed").empty());
  EXPECT_THROW(known_values("model.kind"), std::invalid_argument);
  // Every name parses and prints back as itself.
  for (const auto& [value, name] : EnumNames<Optimizer>::table) {
    const auto c = parse_config("", {std::string("classify.optimizer=") + name});
    EXPECT_EQ(c.classify.optimizer, value);
    EXPECT_EQ(get_value(c, "classify.optimizer"), name);
  }
}

bool selects(KeyFilter filter, const std::string& key) {
  const auto keys = keys_where(filter);
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

TEST(Config, KeyFiltersCompareTheKeysTheyAlwaysDid) {
  auto starts = [](const std::string& key, const char* prefix) {
    return key.rfind(prefix, 0) == 0;
  };
  for (const auto& key : known_keys()) {
    const bool report = starts(key, "report."), dist = starts(key, "distributed.");
    // --resume: all but stages, threads, report.* and distributed.*.
    EXPECT_EQ(selects(kResumeKeys, key), !(key == "stages" || key == "threads" || report || dist))
        << key;
    // The ranks of a run: all but threads, device, the paths a machine has its own of
    // (data.root, data.unlabeled, data.cache_dir, output_dir), stages and report.*.
    const bool path = key == "data.root" || key == "data.unlabeled" || key == "data.cache_dir" ||
                      key == "output_dir";
    EXPECT_EQ(selects(kRankKeys, key),
              !(key == "threads" || key == "device" || path || key == "stages" || report))
        << key;
    // The raw-pixel baseline: seed, precision, data.* but what only pretrain reads (the unlabeled
    // images and their cache), and classify.*.
    const bool pretrain_only =
        key == "data.unlabeled" || key == "data.unlabeled_only" || key == "data.cache_dir";
    EXPECT_EQ(selects(kBaselineKeys, key), key == "seed" || key == "precision" ||
                                               (starts(key, "data.") && !pretrain_only) ||
                                               starts(key, "classify."))
        << key;
  }
  Config a, b;
  b.threads = 3;
  b.classify.pooling = Pooling::kMax;
  b.distributed.backend = Backend::kGloo;
  const auto resume = differences(a, b, kResumeKeys);
  ASSERT_EQ(resume.size(), 1u);
  EXPECT_EQ(resume[0].key, "classify.pooling");
  EXPECT_EQ(resume[0].a, "avg");
  EXPECT_EQ(resume[0].b, "max");
  const auto ranks = differences(a, b, kRankKeys);
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[1].key, "distributed.backend");
  EXPECT_TRUE(differences(a, a, KeyFilter{}).empty());
}

}  // namespace
}  // namespace aefx::config
