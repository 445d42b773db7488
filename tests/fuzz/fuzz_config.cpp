// libFuzzer target: the YAML config loader. The input is split on '\0': the first piece is the
// YAML text, every later piece a --set override ("key=value"). The documented error is
// std::invalid_argument. An accepted config must also survive its own round trip: to_yaml() is
// documented to give YAML that parse_config reads back, to the same resolved config, and
// get_value() must give a value for a known key. Anything else is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "aefx/config/config.h"

namespace {

[[noreturn]] void finding(const std::string& what, const std::string& yaml) {
  std::fprintf(stderr, "fuzz_config: %s\n--- resolved config ---\n%s\n", what.c_str(),
               yaml.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> pieces;
  for (size_t start = 0;;) {
    const size_t end = input.find('\0', start);
    pieces.push_back(input.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  const std::vector<std::string> overrides(pieces.begin() + 1, pieces.end());

  aefx::config::Config config;
  try {
    config = aefx::config::parse_config(pieces[0], overrides, "fuzz input");
  } catch (const std::invalid_argument&) {
    return 0;
  }

  const std::string yaml = aefx::config::to_yaml(config);
  try {
    const auto again = aefx::config::parse_config(yaml, {}, "to_yaml output");
    if (aefx::config::to_yaml(again) != yaml) finding("to_yaml does not round-trip", yaml);
  } catch (const std::invalid_argument& e) {
    finding(std::string("parse_config rejects to_yaml's output: ") + e.what(), yaml);
  }
  // One key per input (the whole list would double the time per input under ASan).
  const auto keys = aefx::config::known_keys();
  const std::string& key = keys[size % keys.size()];
  if (aefx::config::get_value(config, key).empty()) finding("empty value for " + key, yaml);
  return 0;
}
