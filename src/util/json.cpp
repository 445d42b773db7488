#include "aefx/util/json.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace aefx::util {
namespace {

void escape_into(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void newline(std::string& out, int indent, int depth) {
  if (indent < 0) return;
  out += '\n';
  out.append(static_cast<size_t>(indent * depth), ' ');
}

}  // namespace

Json Json::object(std::initializer_list<std::pair<std::string, Json>> items) {
  return Json(Object(items.begin(), items.end()));
}

Json& Json::set(const std::string& key, Json value) {
  if (std::holds_alternative<std::nullptr_t>(v_)) v_ = Object{};
  auto* obj = std::get_if<Object>(&v_);
  if (!obj) throw std::logic_error("Json::set on a non-object");
  for (auto& kv : *obj) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return *this;
    }
  }
  obj->emplace_back(key, std::move(value));
  return *this;
}

void Json::push_back(Json value) {
  if (std::holds_alternative<std::nullptr_t>(v_)) v_ = Array{};
  auto* arr = std::get_if<Array>(&v_);
  if (!arr) throw std::logic_error("Json::push_back on a non-array");
  arr->push_back(std::move(value));
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  if (std::holds_alternative<std::nullptr_t>(v_)) {
    out += "null";
  } else if (auto* b = std::get_if<bool>(&v_)) {
    out += *b ? "true" : "false";
  } else if (auto* i = std::get_if<int64_t>(&v_)) {
    out += std::to_string(*i);
  } else if (auto* d = std::get_if<double>(&v_)) {
    if (!std::isfinite(*d)) {
      out += "null";
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.10g", *d);
      out += buf;
    }
  } else if (auto* s = std::get_if<std::string>(&v_)) {
    escape_into(out, *s);
  } else if (auto* a = std::get_if<Array>(&v_)) {
    // Arrays of scalars stay on one line: confusion matrices remain readable.
    bool flat = true;
    for (const auto& e : *a)
      flat = flat && !std::holds_alternative<Array>(e.v_) && !std::holds_alternative<Object>(e.v_);
    out += '[';
    for (size_t k = 0; k < a->size(); ++k) {
      if (k) out += flat || indent < 0 ? ", " : ",";
      if (!flat) newline(out, indent, depth + 1);
      (*a)[k].dump_to(out, flat ? -1 : indent, depth + 1);
    }
    if (!flat && !a->empty()) newline(out, indent, depth);
    out += ']';
  } else if (auto* o = std::get_if<Object>(&v_)) {
    out += '{';
    for (size_t k = 0; k < o->size(); ++k) {
      if (k) out += indent < 0 ? ", " : ",";
      newline(out, indent, depth + 1);
      escape_into(out, (*o)[k].first);
      out += ": ";
      (*o)[k].second.dump_to(out, indent, depth + 1);
    }
    if (!o->empty()) newline(out, indent, depth);
    out += '}';
  }
}

}  // namespace aefx::util
