#include "aefx/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "aefx/util/fs.h"

namespace aefx::config {
namespace {

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

[[noreturn]] void fail(const std::string& key, const std::string& expected,
                       const std::string& found) {
  throw std::invalid_argument("config key '" + key + "': expected " + expected + ", found " +
                              found);
}

template <class T>
const char* type_name() {
  if constexpr (std::is_enum_v<T>) return "a string";
  if constexpr (std::is_same_v<T, int64_t>) return "an integer";
  if constexpr (std::is_same_v<T, double>) return "a number";
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "a list of integers";
  if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
}

template <class S>
S scalar_as(const std::string& key, const YAML::Node& node, const char* what) {
  if (!node.IsScalar()) fail(key, what, describe(node));
  try {
    return node.as<S>();
  } catch (const YAML::Exception&) {
    fail(key, what, describe(node));
  }
}

template <class T>
T parse_value(const std::string& key, const YAML::Node& node) {
  const char* what = type_name<T>();
  if constexpr (std::is_same_v<T, std::vector<int64_t>> ||
                std::is_same_v<T, std::vector<std::string>>) {
    if (!node.IsSequence()) fail(key, what, describe(node));
    T out;
    for (const auto& item : node) {
      out.push_back(scalar_as<typename T::value_type>(key, item, what));
    }
    return out;
  } else if constexpr (std::is_enum_v<T>) {
    const auto name = scalar_as<std::string>(key, node, what);
    const auto value = from_name<T>(name);
    if (!value) fail(key, "one of " + names_of<T>(), name);
    return *value;
  } else {
    return scalar_as<T>(key, node, what);
  }
}

template <class T>
YAML::Node to_node(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    return YAML::Node(std::string(name_of(value)));
  } else if constexpr (std::is_same_v<T, double>) {
    if (!std::isfinite(value)) return YAML::Node(value);
    // The shortest text that reads back as the same double: 0.003, not 0.0030000000000000001.
    char buf[40];
    for (int digits = 1; digits <= 17; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, value);
      if (std::strtod(buf, nullptr) == value) break;
    }
    return YAML::Node(std::string(buf));
  } else {
    YAML::Node n(value);
    if constexpr (std::is_same_v<T, std::vector<int64_t>> ||
                  std::is_same_v<T, std::vector<std::string>>) {
      n = YAML::Node(YAML::NodeType::Sequence);
      for (const auto& v : value) n.push_back(v);
      n.SetStyle(YAML::EmitterStyle::Flow);
    }
    return n;
  }
}

/// A check returns "" when the value is fine, else what was expected.
template <class T>
using Check = std::function<std::string(const T&)>;

template <class T>
std::string show(const T& v) {
  std::ostringstream ss;
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    ss << "[";
    for (size_t i = 0; i < v.size(); ++i) ss << (i ? ", " : "") << v[i];
    ss << "]";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    ss << "[";
    for (size_t i = 0; i < v.size(); ++i) ss << (i ? ", " : "") << v[i];
    ss << "]";
  } else if constexpr (std::is_same_v<T, bool>) {
    ss << (v ? "true" : "false");
  } else if constexpr (std::is_enum_v<T>) {
    ss << name_of(v);
  } else {
    ss << v;
  }
  return ss.str();
}

struct Field {
  std::string key;
  std::function<void(Config&, const YAML::Node&)> read;
  std::function<YAML::Node(const Config&)> write;
  unsigned marks = 0;                ///< KeyMark bits
  std::vector<std::string> choices;  ///< the names of an enum key
};

template <class T, class Get>
Field make_field(const std::string& key, Get get, Check<T> check, unsigned marks) {
  Field f;
  f.key = key;
  f.marks = marks;
  if constexpr (std::is_enum_v<T>) {
    for (const auto& n : EnumNames<T>::table) f.choices.emplace_back(n.name);
  }
  f.read = [key, get, check](Config& c, const YAML::Node& node) {
    T value = parse_value<T>(key, node);
    if (check) {
      const std::string expected = check(value);
      if (!expected.empty()) fail(key, expected, show(value));
    }
    get(c) = value;
  };
  f.write = [get](const Config& c) { return to_node<T>(get(const_cast<Config&>(c))); };
  return f;
}

template <class T>
Check<T> at_least(T lo) {
  return [lo](const T& v) { return v >= lo ? "" : "a value >= " + show(lo); };
}
Check<double> in_range(double lo, double hi_exclusive) {
  return [=](const double& v) {
    return v >= lo && v < hi_exclusive
               ? ""
               : "a value in [" + show(lo) + ", " + show(hi_exclusive) + ")";
  };
}
Check<double> positive() {
  return [](const double& v) { return v > 0 ? "" : "a value > 0"; };
}
// Free-form strings name files and folders. Control characters are refused: no path needs them,
// and yaml-cpp 0.7 does not round-trip them (a trailing lone CR is kept when read but emitted
// unquoted, so the run's resolved config.yaml would read back a different value).
Check<std::string> non_empty() {
  return [](const std::string& v) {
    const bool control =
        std::any_of(v.begin(), v.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    return v.empty() || control ? "a non-empty string without control characters" : "";
  };
}
// An optional path: empty, or as non_empty.
Check<std::string> path_or_empty() {
  return [](const std::string& v) {
    return v.empty() || non_empty()(v).empty() ? "" : "a path without control characters";
  };
}
// Class names: each one a non-empty string without control characters, none twice.
Check<std::vector<std::string>> names() {
  return [](const std::vector<std::string>& v) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!non_empty()(v[i]).empty() || std::find(v.begin(), v.begin() + static_cast<long>(i),
                                                  v[i]) != v.begin() + static_cast<long>(i))
        return std::string("a list of distinct non-empty names without control characters");
    }
    return std::string();
  };
}
Check<std::vector<int64_t>> list_of_at_least(int64_t lo, bool allow_empty) {
  return [=](const std::vector<int64_t>& v) {
    const std::string want = std::string(allow_empty ? "a" : "a non-empty") +
                             " list of integers >= " + std::to_string(lo);
    if (v.empty() && !allow_empty) return want;
    for (auto x : v) {
      if (x < lo) return want;
    }
    return std::string();
  };
}
Check<std::string> device_spec() {
  return [](const std::string& v) {
    if (v == "auto" || v == "cpu" || v == "cuda") return std::string();
    if (v.rfind("cuda:", 0) == 0 && v.size() > 5 &&
        std::all_of(v.begin() + 5, v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::string();
    }
    return std::string("auto, cpu, cuda or cuda:N");
  };
}
Check<std::vector<std::string>> stage_list() {
  return [](const std::vector<std::string>& v) {
    std::string s = "a non-empty list of stages from:";
    for (const auto& k : known_stages()) s += " " + k;
    if (v.empty()) return s;
    for (const auto& name : v) {
      if (std::find(known_stages().begin(), known_stages().end(), name) == known_stages().end()) {
        return s;
      }
    }
    return std::string();
  };
}

// The field table is the single description of the config: parsing, validation, --set, the
// resolved config, known_keys() and which comparisons of two configs look at a key (its
// KeyMark bits) all come from it.
#define AEFX_FIELD_AS(key, path, check, marks)                      \
  make_field<std::decay_t<decltype(std::declval<Config&>().path)>>( \
      key, [](Config & c) -> auto& { return c.path; },              \
      Check<std::decay_t<decltype(std::declval<Config&>().path)>>(check), marks)
#define AEFX_FIELD(path, check, marks)                              \
  make_field<std::decay_t<decltype(std::declval<Config&>().path)>>( \
      #path, [](Config & c) -> auto& { return c.path; },            \
      Check<std::decay_t<decltype(std::declval<Config&>().path)>>(check), marks)

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      AEFX_FIELD(name, non_empty(), 0),
      AEFX_FIELD(device, device_spec(), kPerMachine),
      AEFX_FIELD(seed, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(threads, at_least<int64_t>(0), kNoEffect),
      AEFX_FIELD(precision, nullptr, kBaselineInput),
      AEFX_FIELD(output_dir, non_empty(), kPerMachine),
      AEFX_FIELD(stages, stage_list(), kNoEffect),
      AEFX_FIELD(data.format, nullptr, kBaselineInput),
      AEFX_FIELD(data.root, non_empty(), kBaselineInput | kPerMachine),
      AEFX_FIELD(data.val_size, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(data.limit_train, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(data.limit_test, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(data.image_size, at_least<int64_t>(8), kBaselineInput),
      AEFX_FIELD(data.class_names, names(), kBaselineInput),
      AEFX_FIELD(data.unlabeled, path_or_empty(), kPerMachine),
      AEFX_FIELD(data.unlabeled_only, nullptr, 0),
      AEFX_FIELD(data.cache_dir, path_or_empty(), kPerMachine),
      AEFX_FIELD(model.type, nullptr, 0),
      AEFX_FIELD(model.widths, list_of_at_least(1, false), 0),
      AEFX_FIELD(model.blocks, list_of_at_least(1, false), 0),
      AEFX_FIELD(model.decoder_blocks, at_least<int64_t>(0), 0),
      AEFX_FIELD(model.decoder_width, positive(), 0),
      AEFX_FIELD(model.hidden, list_of_at_least(1, true), 0),
      AEFX_FIELD(model.code_size, at_least<int64_t>(1), 0),
      AEFX_FIELD(model.activation, nullptr, 0),
      AEFX_FIELD(model.output_activation, nullptr, 0),
      AEFX_FIELD(model.whiten_patch, at_least<int64_t>(0), 0),
      AEFX_FIELD(model.whiten_eps, positive(), 0),
      AEFX_FIELD(model.whiten_center, nullptr, 0),
      AEFX_FIELD(model.atoms, at_least<int64_t>(1), 0),
      AEFX_FIELD(model.threshold, at_least(0.0), 0),
      AEFX_FIELD(model.normalize_patches, nullptr, 0),
      AEFX_FIELD(pretrain.epochs, at_least<int64_t>(0), 0),
      AEFX_FIELD(pretrain.epoch_images, at_least<int64_t>(0), 0),
      AEFX_FIELD(pretrain.batch_size, at_least<int64_t>(1), 0),
      AEFX_FIELD(pretrain.lr, positive(), 0),
      AEFX_FIELD(pretrain.optimizer, nullptr, 0),
      AEFX_FIELD(pretrain.weight_decay, at_least(0.0), 0),
      AEFX_FIELD(pretrain.schedule, nullptr, 0),
      AEFX_FIELD(pretrain.warmup_epochs, at_least(0.0), 0),
      AEFX_FIELD(pretrain.mask_ratio, in_range(0.0, 1.0), 0),
      AEFX_FIELD(pretrain.mask_patch, at_least<int64_t>(1), 0),
      AEFX_FIELD(pretrain.noise, at_least(0.0), 0),
      AEFX_FIELD(pretrain.augment, nullptr, 0),
      AEFX_FIELD(pretrain.crop_padding, at_least<int64_t>(0), 0),
      AEFX_FIELD(classify.epochs, at_least<int64_t>(1), kBaselineInput),
      AEFX_FIELD(classify.batch_size, at_least<int64_t>(1), kBaselineInput),
      AEFX_FIELD(classify.lr, positive(), kBaselineInput),
      AEFX_FIELD(classify.optimizer, nullptr, kBaselineInput),
      AEFX_FIELD(classify.weight_decay, at_least(0.0), kBaselineInput),
      AEFX_FIELD(classify.schedule, nullptr, kBaselineInput),
      AEFX_FIELD(classify.hidden, list_of_at_least(1, true), kBaselineInput),
      AEFX_FIELD(classify.dropout, in_range(0.0, 1.0), kBaselineInput),
      AEFX_FIELD(classify.label_smoothing, in_range(0.0, 1.0), kBaselineInput),
      AEFX_FIELD(classify.pool_grids, list_of_at_least(0, false), kBaselineInput),
      AEFX_FIELD(classify.pooling, nullptr, kBaselineInput),
      AEFX_FIELD(classify.flip_codes, nullptr, kBaselineInput),
      AEFX_FIELD(classify.augmented_copies, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(classify.crop_padding, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(classify.code_batch_size, at_least<int64_t>(1), kBaselineInput),
      AEFX_FIELD(classify.labels_per_class, at_least<int64_t>(0), kBaselineInput),
      AEFX_FIELD(evaluate.batch_size, at_least<int64_t>(1), 0),
      AEFX_FIELD(evaluate.knn_k, at_least<int64_t>(0), 0),
      AEFX_FIELD(evaluate.knn_temperature, positive(), 0),
      AEFX_FIELD_AS("export.device", export_.device, device_spec(), 0),
      AEFX_FIELD_AS("export.tolerance", export_.tolerance, positive(), 0),
      AEFX_FIELD(report.pictures, nullptr, kNoEffect),
      AEFX_FIELD(report.reconstruction_every, at_least<int64_t>(1), kNoEffect),
      AEFX_FIELD(report.latent_points, at_least<int64_t>(1), kNoEffect),
      AEFX_FIELD(distributed.backend, nullptr, kLaunch),
      AEFX_FIELD(distributed.timeout, positive(), kLaunch),
  };
  return table;
}
#undef AEFX_FIELD
#undef AEFX_FIELD_AS

const Field* find_field(const std::string& key) {
  for (const auto& f : fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

bool is_section(const std::string& key) {
  const std::string prefix = key + ".";
  for (const auto& f : fields()) {
    if (f.key.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

[[noreturn]] void unknown_key(const std::string& key) {
  throw std::invalid_argument("unknown config key '" + key + "' (did you mean '" +
                              nearest_key(key) + "'?)");
}

void check_keys(const YAML::Node& node, const std::string& prefix) {
  for (const auto& kv : node) {
    // A list or mapping as a key ("? [a, b]") has no name: as<std::string>() would throw a
    // YAML::BadConversion (a runtime_error), not the documented invalid_argument.
    if (kv.first.IsMap() || kv.first.IsSequence()) {
      const std::string where =
          prefix.empty() ? "at the top level" : "in '" + prefix.substr(0, prefix.size() - 1) + "'";
      throw std::invalid_argument("config: expected key names " + where + ", found " +
                                  describe(kv.first) + " as a key");
    }
    const std::string key = prefix + kv.first.as<std::string>();
    if (find_field(key)) continue;
    if (is_section(key)) {
      if (!kv.second.IsMap()) fail(key, "a mapping of keys", describe(kv.second));
      check_keys(kv.second, key + ".");
      continue;
    }
    unknown_key(key);
  }
}

YAML::Node lookup(const YAML::Node& root, const std::string& key) {
  // reset() rebinds a handle; operator= would overwrite the node it refers to.
  YAML::Node cur;
  cur.reset(root);
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    const YAML::Node& view = cur;  // const operator[] never inserts
    if (!view.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node next = view[part];
    if (!next.IsDefined()) return next;
    cur.reset(next);
  }
  return cur;
}

void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw std::invalid_argument("--set expects key=value, found '" + assignment + "'");
  }
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  if (!find_field(key)) unknown_key(key);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument("--set " + key + ": cannot parse value '" + text + "': " + e.msg);
  }
  if (!value.IsDefined() || value.IsNull()) value = YAML::Node(text);
  // Walk/create the sections; yaml-cpp nodes are handles, so assigning through them edits root.
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  if (!root.IsMap()) root = YAML::Node(YAML::NodeType::Map);
  YAML::Node cur = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!cur[parts[i]].IsMap()) cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
    cur.reset(cur[parts[i]]);
  }
  cur[parts.back()] = value;
}

void check_consistency(const Config& c) {
  if (c.data.unlabeled_only && c.data.unlabeled.empty()) {
    throw std::invalid_argument(
        "config key 'data.unlabeled_only': true needs data.unlabeled (a folder of images)");
  }
  if (!c.data.class_names.empty() && c.data.format != DataFormat::kIdx) {
    throw std::invalid_argument("config key 'data.class_names': only for data.format idx (" +
                                std::string(name_of(c.data.format)) +
                                " names its classes itself), found " + show(c.data.class_names));
  }
  if (c.pretrain.mask_ratio > 0 && c.pretrain.mask_patch > c.data.image_size) {
    throw std::invalid_argument("config key 'pretrain.mask_patch': expected <= data.image_size (" +
                                std::to_string(c.data.image_size) + "), found " +
                                std::to_string(c.pretrain.mask_patch));
  }
  if (c.model.whiten_center && c.model.whiten_patch == 0)
    throw std::invalid_argument(
        "config key 'model.whiten_center': centres the whitening stem's patches, so it needs "
        "model.whiten_patch > 0, found 0");
  if (c.model.whiten_patch > 0) {
    const auto patch = std::to_string(c.model.whiten_patch);
    if (c.model.type == ModelType::kDense)
      throw std::invalid_argument(
          "config key 'model.whiten_patch': a stem for conv and patch models, found " + patch +
          " with model.type dense");
    if (c.model.whiten_patch % 2 == 0 || c.model.whiten_patch > c.data.image_size)
      throw std::invalid_argument(
          "config key 'model.whiten_patch': expected 0 or an odd side <= data.image_size, found " +
          patch);
    // A sigmoid maps to pixels in [0, 1]; the whitened image is not in those units.
    if (c.model.output_activation != OutputActivation::kIdentity)
      throw std::invalid_argument(
          "config key 'model.output_activation': expected identity with model.whiten_patch > 0, "
          "found " +
          std::string(name_of(c.model.output_activation)));
  }
  if (c.model.normalize_patches && c.model.type != ModelType::kPatch)
    throw std::invalid_argument(
        "config key 'model.normalize_patches': normalises a patch dictionary's responses, so it "
        "needs model.type patch, found " +
        std::string(name_of(c.model.type)));
  // A dense autoencoder has one code: the conv keys and classify.pool_grids/pooling do not apply.
  if (c.model.type == ModelType::kDense) return;
  if (c.model.type == ModelType::kPatch) {
    // One stage: the responses at every position whose whole patch lies inside the image.
    if (c.model.whiten_patch == 0)
      throw std::invalid_argument(
          "config key 'model.whiten_patch': model.type patch needs the stem's patch side (odd, "
          "e.g. 7), found 0");
    const int64_t side = c.data.image_size - c.model.whiten_patch + 1;
    if (c.classify.pool_grids.size() != 1 || c.classify.pool_grids[0] < 1 ||
        c.classify.pool_grids[0] > side)
      throw std::invalid_argument("config key 'classify.pool_grids': model.type patch has one " +
                                  std::to_string(side) + "x" + std::to_string(side) +
                                  " map, so expected [g] with 1 <= g <= " + std::to_string(side) +
                                  ", found " + show(c.classify.pool_grids));
    return;
  }
  const auto stages = static_cast<int64_t>(c.model.widths.size());
  if (static_cast<int64_t>(c.model.blocks.size()) != stages) {
    throw std::invalid_argument(
        "config key 'model.blocks': expected one entry per model.widths entry (" +
        std::to_string(stages) + "), found " + show(c.model.blocks));
  }
  if (static_cast<int64_t>(c.classify.pool_grids.size()) != stages) {
    throw std::invalid_argument(
        "config key 'classify.pool_grids': expected one entry per model.widths "
        "entry (" +
        std::to_string(stages) + "), found " + show(c.classify.pool_grids));
  }
  if (std::all_of(c.classify.pool_grids.begin(), c.classify.pool_grids.end(),
                  [](int64_t g) { return g == 0; })) {
    throw std::invalid_argument(
        "config key 'classify.pool_grids': expected at least one stage with a "
        "grid > 0, found " +
        show(c.classify.pool_grids));
  }
  // The encoder halves the image once per extra stage: 2^(stages - 1) must fit an int64.
  if (stages > 63) {
    throw std::invalid_argument("config key 'model.widths': expected at most 63 entries, found " +
                                std::to_string(stages));
  }
  const int64_t down = int64_t{1} << (stages - 1);
  if (c.data.image_size % down != 0) {
    throw std::invalid_argument("config key 'data.image_size': expected a multiple of " +
                                std::to_string(down) + " (the encoder halves it " +
                                std::to_string(stages - 1) + " times), found " +
                                std::to_string(c.data.image_size));
  }
  for (int64_t s = 0; s < stages; ++s) {
    const int64_t side = c.data.image_size >> s;
    if (c.classify.pool_grids[s] > side) {
      throw std::invalid_argument("config key 'classify.pool_grids': stage " + std::to_string(s) +
                                  " is " + std::to_string(side) + "x" + std::to_string(side) +
                                  ", so its grid must be <= " + std::to_string(side) + ", found " +
                                  std::to_string(c.classify.pool_grids[s]));
    }
  }
}

}  // namespace

const std::vector<std::string>& known_stages() {
  static const std::vector<std::string> stages{"pretrain", "classify", "baseline", "evaluate",
                                               "export"};
  return stages;
}

int64_t input_channels(const DataConfig& data) { return data.format == DataFormat::kIdx ? 1 : 3; }

std::vector<std::string> known_keys() {
  std::vector<std::string> keys;
  for (const auto& f : fields()) keys.push_back(f.key);
  return keys;
}

std::vector<std::string> known_values(const std::string& key) {
  const Field* f = find_field(key);
  if (!f) unknown_key(key);
  return f->choices;
}

std::vector<std::string> keys_where(KeyFilter filter) {
  std::vector<std::string> keys;
  for (const auto& f : fields()) {
    if ((f.marks & filter.require) == filter.require && (f.marks & filter.exclude) == 0)
      keys.push_back(f.key);
  }
  return keys;
}

std::vector<Difference> differences(const Config& a, const Config& b, KeyFilter filter) {
  std::vector<Difference> out;
  for (const auto& key : keys_where(filter)) {
    auto va = get_value(a, key), vb = get_value(b, key);
    if (va != vb) out.push_back({key, std::move(va), std::move(vb)});
  }
  return out;
}

std::string nearest_key(const std::string& key) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& f : fields()) {
    // Compare against the full path and against the leaf, so "epoch" finds "pretrain.epochs".
    const auto leaf = f.key.substr(f.key.rfind('.') + 1);
    const size_t d = std::min(edit_distance(key, f.key), edit_distance(key, leaf) + 1);
    if (d < best_d) best_d = d, best = f.key;
  }
  return best;
}

namespace {

/// The YAML document of `yaml_text`; a syntax error names `source`, line and column.
YAML::Node load_yaml(const std::string& yaml_text, const std::string& source) {
  try {
    return YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw std::invalid_argument(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                                std::to_string(e.mark.column + 1) + ": malformed YAML: " + e.msg);
  }
}

/// The validated config of a YAML document (empty: every default), `overrides` applied.
Config config_from(YAML::Node root, const std::vector<std::string>& overrides,
                   const std::string& source) {
  if (root.IsNull() || !root.IsDefined()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    throw std::invalid_argument(
        source + ": expected a mapping of config keys at the top level, found " + describe(root));
  }
  for (const auto& o : overrides) apply_override(root, o);
  check_keys(root, "");
  Config c;
  for (const auto& f : fields()) {
    YAML::Node node = lookup(root, f.key);
    if (node.IsDefined()) f.read(c, node);
  }
  check_consistency(c);
  return c;
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                    const std::string& source) {
  return config_from(load_yaml(yaml_text, source), overrides, source);
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  // A directory opens and reads as empty text on Linux: refused by name, not run with defaults.
  if (std::filesystem::is_directory(path)) {
    throw std::invalid_argument(
        "config file " + path +
        " is a directory (expected a YAML file, e.g. configs/cifar10.yaml)");
  }
  std::string text;
  try {
    text = util::read_text(path);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(std::string("config file: ") + e.what());
  }
  const YAML::Node root = load_yaml(text, path);
  // An empty file (or only comments) is more likely the wrong file than a wish for defaults.
  if (root.IsNull() || !root.IsDefined()) {
    throw std::invalid_argument("config file " + path +
                                " holds no config keys (expected a YAML mapping, e.g. name: x)");
  }
  return config_from(root, overrides, path);
}

std::string to_yaml(const Config& config) {
  YAML::Node root(YAML::NodeType::Map);
  for (const auto& f : fields()) {
    const auto dot = f.key.find('.');
    if (dot == std::string::npos) {
      root[f.key] = f.write(config);
    } else {
      root[f.key.substr(0, dot)][f.key.substr(dot + 1)] = f.write(config);
    }
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::string get_value(const Config& config, const std::string& key) {
  const Field* f = find_field(key);
  if (!f) unknown_key(key);
  YAML::Emitter out;
  out << f->write(config);
  return out.c_str();
}

std::vector<std::string> parse_stage_list(const std::string& csv) {
  std::vector<std::string> out;
  std::stringstream ss(csv);
  for (std::string s; std::getline(ss, s, ',');) {
    if (s.empty()) continue;
    if (std::find(known_stages().begin(), known_stages().end(), s) == known_stages().end()) {
      std::string all;
      for (const auto& k : known_stages()) all += " " + k;
      throw std::invalid_argument("unknown stage '" + s + "' (stages:" + all + ")");
    }
    out.push_back(s);
  }
  if (out.empty()) throw std::invalid_argument("--stages expects a comma-separated list of stages");
  return out;
}

}  // namespace aefx::config
