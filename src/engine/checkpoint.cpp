#include "aefx/engine/checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <mutex>
#include <sstream>
#include <stdexcept>

#include "aefx/util/fs.h"

namespace aefx::engine {

void save_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                     torch::nn::Module& module, torch::optim::Optimizer* optimizer,
                     const ArchiveWriter& extra) {
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
  if (extra) extra(archive);
  // Serialised in memory, then written by aefx: LibTorch 1.13's file writer throws from a
  // destructor when a write fails (a full disk), which ends the process.
  std::ostringstream bytes;
  archive.save_to(bytes);
  util::atomic_write_text(path, bytes.str());
}

CheckpointMeta load_checkpoint(const std::filesystem::path& path, const CheckpointMeta& expected,
                               torch::nn::Module& module, const std::string& written_by,
                               dist::Group& group, torch::optim::Optimizer* optimizer,
                               const ArchiveReader& extra) {
  const std::string bytes = group.file_from_main(path.string(), written_by);
  torch::serialize::InputArchive archive;
  try {
    // Read onto the CPU: a checkpoint written on a GPU then loads anywhere; callers move it.
    archive.load_from(bytes.data(), bytes.size(), torch::kCPU);
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
    if (extra) extra(archive);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot load checkpoint " + path.string() + ": " +
                             e.what_without_backtrace());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("cannot load checkpoint " + path.string() + ": " + e.what());
  }
  return meta;
}

namespace {

/// The default generator of the device the random draws of a stage happen on, and of the CPU.
std::vector<std::pair<std::string, at::Generator>> generators(const torch::Device& device) {
  std::vector<std::pair<std::string, at::Generator>> gens{
      {"aefx_rng_cpu", at::detail::getDefaultCPUGenerator()}};
  if (device.is_cuda())
    gens.emplace_back("aefx_rng_cuda", at::globalContext().defaultGenerator(device));
  return gens;
}

}  // namespace

void write_resume_state(torch::serialize::OutputArchive& archive, const TrainState& state,
                        const torch::Device& device) {
  archive.write("aefx_resume_epoch", c10::IValue(state.epoch));
  archive.write("aefx_resume_step", c10::IValue(state.step));
  archive.write("aefx_resume_global_step", c10::IValue(state.global_step));
  archive.write("aefx_resume_samples", c10::IValue(state.samples_in_epoch));
  archive.write("aefx_resume_epoch_seconds", c10::IValue(state.epoch_seconds));
  if (state.epoch_losses.defined() && state.step > 0)
    archive.write("aefx_resume_epoch_losses", state.epoch_losses.cpu());
  for (auto& [key, gen] : generators(device)) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write(key, gen.get_state());
  }
}

TrainState read_resume_state(torch::serialize::InputArchive& archive, const torch::Device& device) {
  c10::IValue epoch, step, global_step, samples, seconds;
  if (!archive.try_read("aefx_resume_epoch", epoch) ||
      !archive.try_read("aefx_resume_step", step) ||
      !archive.try_read("aefx_resume_global_step", global_step) ||
      !archive.try_read("aefx_resume_samples", samples) ||
      !archive.try_read("aefx_resume_epoch_seconds", seconds)) {
    throw std::runtime_error("it holds no resume state");
  }
  TrainState s;
  s.epoch = epoch.toInt();
  s.step = step.toInt();
  s.global_step = global_step.toInt();
  s.samples_in_epoch = samples.toInt();
  s.epoch_seconds = seconds.toDouble();
  torch::Tensor losses;
  if (archive.try_read("aefx_resume_epoch_losses", losses)) s.epoch_losses = losses.to(device);
  if (s.step > 0 && !s.epoch_losses.defined())
    throw std::runtime_error("its resume state lacks the losses of the current epoch");
  for (auto& [key, gen] : generators(device)) {
    torch::Tensor state;
    if (!archive.try_read(key, state)) throw std::runtime_error("it lacks " + key);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
  return s;
}

}  // namespace aefx::engine
