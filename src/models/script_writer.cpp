#include "aefx/models/script_writer.h"

namespace aefx::models {

ScriptWriter::ScriptWriter(const std::string& name) : module_(name) {}

std::string ScriptWriter::tensor(const std::string& name, const torch::Tensor& t) {
  std::string attr = name;
  for (auto& c : attr) {
    if (c == '.') c = '_';
  }
  module_.register_buffer(attr, t.detach().contiguous().clone());
  return "self." + attr;
}

torch::jit::Module ScriptWriter::finish(const std::string& source) {
  module_.define(source);
  module_.eval();
  return module_;
}

}  // namespace aefx::models
