#pragma once
// A small JSON value for the metrics files aefx writes (metrics.json, stage summaries).
// Reading JSON back is done with yaml-cpp, since JSON is valid YAML.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace aefx::util {

/// A JSON value: null, bool, integer, number, string, array or object (keys kept in order).
class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() : v_(nullptr) {}
  Json(bool b) : v_(b) {}
  Json(int i) : v_(static_cast<int64_t>(i)) {}
  Json(int64_t i) : v_(i) {}
  Json(double d) : v_(d) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  /// An object from key/value pairs, in the given order.
  static Json object(std::initializer_list<std::pair<std::string, Json>> items = {});
  /// An array of numbers or strings from any vector.
  template <class T>
  static Json array(const std::vector<T>& values) {
    Array a;
    a.reserve(values.size());
    for (const auto& v : values) a.emplace_back(v);
    return Json(std::move(a));
  }

  /// Sets (or replaces) `key` on an object.
  Json& set(const std::string& key, Json value);
  /// Appends to an array.
  void push_back(Json value);

  /// Serialises; indent < 0 gives one line. Non-finite numbers become null.
  std::string dump(int indent = 2) const;

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  std::variant<std::nullptr_t, bool, int64_t, double, std::string, Array, Object> v_;
};

}  // namespace aefx::util
