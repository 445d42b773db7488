#include "aefx/engine/checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <stdexcept>

#include "aefx/util/fs.h"

namespace aefx::engine {

void save_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                     torch::nn::Module& module, torch::optim::Optimizer* optimizer) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  archive.write("aefx_format", c10::IValue(kCheckpointFormat));
  archive.write("aefx_kind", c10::IValue(meta.kind));
  archive.write("aefx_architecture", c10::IValue(meta.architecture));
  archive.write("aefx_epoch", c10::IValue(meta.epoch));
  if (optimizer) {
    torch::serialize::OutputArchive opt_archive;
    optimizer->save(opt_archive);
    archive.write("aefx_optimizer", opt_archive);
  }
  util::atomic_write(path,
                     [&](const std::filesystem::path& tmp) { archive.save_to(tmp.string()); });
}

CheckpointMeta load_checkpoint(const std::filesystem::path& path, const CheckpointMeta& expected,
                               torch::nn::Module& module, const std::string& written_by,
                               torch::optim::Optimizer* optimizer) {
  util::require_file(path, written_by);
  torch::serialize::InputArchive archive;
  try {
    // Read onto the CPU: a checkpoint written on a GPU then loads anywhere; callers move it.
    archive.load_from(path.string(), torch::kCPU);
  } catch (const c10::Error&) {
    throw std::runtime_error("cannot read checkpoint " + path.string() +
                             ": not a valid checkpoint file (corrupt or truncated?)");
  }
  c10::IValue format, kind, arch, epoch;
  if (!archive.try_read("aefx_format", format) || !archive.try_read("aefx_kind", kind) ||
      !archive.try_read("aefx_architecture", arch)) {
    throw std::runtime_error("checkpoint " + path.string() + " was not written by aefx");
  }
  if (format.toInt() != kCheckpointFormat) {
    throw std::runtime_error("checkpoint " + path.string() + " has format version " +
                             std::to_string(format.toInt()) + "; this aefx reads version " +
                             std::to_string(kCheckpointFormat));
  }
  CheckpointMeta meta{kind.toStringRef(), arch.toStringRef(), 0};
  if (archive.try_read("aefx_epoch", epoch)) meta.epoch = epoch.toInt();
  if (meta.kind != expected.kind) {
    throw std::runtime_error("checkpoint " + path.string() + " holds a " + meta.kind +
                             ", expected a " + expected.kind);
  }
  if (meta.architecture != expected.architecture) {
    throw std::runtime_error("checkpoint " + path.string() +
                             " does not match the configured model: it "
                             "holds '" +
                             meta.architecture + "' but the config describes '" +
                             expected.architecture + "'");
  }
  try {
    module.load(archive);
    if (optimizer) {
      torch::serialize::InputArchive opt_archive;
      if (archive.try_read("aefx_optimizer", opt_archive)) optimizer->load(opt_archive);
    }
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot load checkpoint " + path.string() + ": " +
                             e.what_without_backtrace());
  }
  return meta;
}

}  // namespace aefx::engine
