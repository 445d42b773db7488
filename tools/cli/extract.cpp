// aefx extract: an exported encoder's codes for image files, folders or a data set's split.
#include "aefx/extract/extract.h"

#include <torch/torch.h>

#include <iostream>
#include <memory>

#include "aefx/config/config.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "cli.h"

namespace aefx::cli {
namespace {

struct ExtractArgs {
  std::string model, out, data, format = "cifar10-binary", split = "test", dtype = "float32";
  std::string device = "cpu", precision = "fp32";
  std::vector<std::string> inputs;
  extract::Options options;
  int64_t threads = 0;
  bool quiet = false;
};

/// The command that continues `a` (for the message of a stopped extraction).
std::string resume_command(const ExtractArgs& a) {
  std::string cmd = "aefx extract --model " + shell_quote(a.model) + " --out " + shell_quote(a.out);
  for (const auto& in : a.inputs) cmd += " " + shell_quote(in);
  if (!a.data.empty()) {
    cmd += " --data " + shell_quote(a.data) + " --format " + a.format + " --split " + a.split;
  }
  if (a.dtype != "float32") cmd += " --dtype " + a.dtype;
  if (a.device != "cpu") cmd += " --device " + a.device;
  if (a.precision != "fp32") cmd += " --precision " + a.precision;
  return cmd + " --resume";
}

int extract_command(const ExtractArgs& a) {
  if (a.model.empty()) throw UsageError("missing --model (a run folder or an exported encoder.pt)");
  if (a.out.empty()) throw UsageError("missing --out (the output folder)");
  if (a.inputs.empty() == a.data.empty()) {
    throw UsageError(a.data.empty() ? "no inputs: name image files or folders, or --data DIR"
                                    : "give either INPUT... or --data DIR, not both");
  }
  if (a.quiet) util::set_log_level(util::LogLevel::kQuiet);
  util::configure_threads(a.threads);
  models::ExportedModel encoder(extract::encoder_file(a.model), "encoder");
  encoder.to(util::resolve_device(a.device));
  extract::Inputs inputs;
  if (!a.data.empty()) {
    config::DataConfig dc;
    dc.root = a.data;
    dc.format = config::from_name<config::DataFormat>(a.format).value();  // checked by --format
    dc.image_size = encoder.image_size();
    if (dc.format == config::DataFormat::kIdx) dc.class_names = encoder.class_names();
    inputs = extract::inputs_from_data(
        dc, a.split == "train" ? data::Split::kTrain : data::Split::kTest);
  } else {
    inputs = extract::inputs_from_paths(a.inputs);
  }
  extract::Options options = a.options;
  options.out = a.out;
  options.dtype = a.dtype == "float16" ? torch::kHalf : torch::kFloat;
  options.precision = a.precision == "bf16" ? torch::kBFloat16 : torch::kFloat;
  try {
    const auto r = extract::extract(encoder, inputs, options);
    if (!r.already_complete) {
      std::cout << util::strfmt("%lld rows in %s (%lld inputs skipped)\n",
                                static_cast<long long>(r.rows), a.out.c_str(),
                                static_cast<long long>(r.skipped));
    }
  } catch (const util::Interrupted& e) {
    std::cerr << "aefx: " << e.what() << ". Resume with: " << resume_command(a) << std::endl;
    return 128 + e.signal();
  }
  return 0;
}

}  // namespace

Action setup_extract(CLI::App& app) {
  auto a = std::make_shared<ExtractArgs>();
  set_help(
      app, "--model MODEL --out DIR (INPUT... | --data DIR [--format F] [--split S]) [options]",
      "Writes the latent codes of an exported encoder (a run folder's encoder.pt, the codes\n"
      "the classify stage trains on) for every image to DIR/features.npy (N x D, NPY),\n"
      "DIR/index.csv (row,path,label: row i of features.npy is line i) and DIR/meta.json.\n"
      "INPUT: image files and folders (searched recursively), or --data for a data set's\n"
      "split (cifar10-binary and idx records are named FILE#record). Images are decoded and\n"
      "resized on worker threads and converted to the model's channels; an unreadable file is\n"
      "skipped with a warning, listed in meta.json, and takes no row. Rows are written as\n"
      "batches finish; a stopped extraction (Ctrl-C, a killed process, a full disk)\n"
      "continues with --resume from its last complete batch.",
      "exit codes: 0 done, 2 usage error (no inputs, a missing input, DIR exists without\n"
      "--resume), 1 runtime error (not an aefx encoder, no decodable image, a write failed),\n"
      "130 / 143 stopped by SIGINT / SIGTERM (continue with --resume)\n\n"
      "examples:\n"
      "  aefx extract --model models/cifar10-cpu photos/ --out feats\n"
      "  aefx extract --model models/cifar10-cpu/encoder.pt --data data/cifar10 --split train "
      "--out feats-train --dtype float16\n"
      "  python3 -c \"import numpy as np; X = np.load('feats/features.npy', mmap_mode='r')\"\n");
  app.add_option("INPUT", a->inputs, "image files or folders");
  app.add_option("--model", a->model, "a run folder (its encoder.pt) or an exported encoder.pt")
      ->type_name("MODEL");
  app.add_option("--out", a->out, "the output folder (must not exist, unless --resume)")
      ->type_name("DIR");
  app.add_option("--data", a->data, "a data set's root folder instead of INPUT...")
      ->type_name("DIR");
  app.add_option("--format", a->format, "of --data: cifar10-binary (default), image-folder or idx")
      ->type_name("FORMAT")
      ->check(expects(CLI::IsMember(config::known_values("data.format")),
                      config::names_of<config::DataFormat>(", ")));
  app.add_option("--split", a->split, "of --data: test (default) or train")
      ->type_name("SPLIT")
      ->check(expects(CLI::IsMember(std::vector<std::string>{"train", "test"}), "train or test"));
  app.add_option("--dtype", a->dtype, "of features.npy: float32 (default) or float16")
      ->type_name("DTYPE")
      ->check(expects(CLI::IsMember(std::vector<std::string>{"float32", "float16"}),
                      "float32 or float16"));
  app.add_option("--batch", a->options.batch_size,
                 "images per forward pass (default 256); memory, not the result")
      ->type_name("N")
      ->check(integer_at_least(1));
  app.add_option("--precision", a->precision,
                 "fp32 (default: encoder.pt's codes) or bf16 (autocast: about 2x faster on\n"
                 "CPUs with native bf16 and on GPUs; codes within bf16 rounding)")
      ->type_name("P")
      ->check(expects(CLI::IsMember(std::vector<std::string>{"fp32", "bf16"}), "fp32 or bf16"));
  app.add_option("--device", a->device, "cpu (default), cuda or cuda:N")->type_name("DEVICE");
  app.add_option("--workers", a->options.workers,
                 "threads decoding image files (default: one per core)")
      ->type_name("N")
      ->check(integer_at_least(0));
  app.add_option("--threads", a->threads, "LibTorch's threads (default 0: every core)")
      ->type_name("N")
      ->check(integer_at_least(0));
  app.add_flag("--resume", a->options.resume,
               "continue the extraction stopped in DIR (same model, inputs, dtype and precision)");
  app.add_flag("--quiet", a->quiet, "print warnings and errors only (no progress)");
  return [a] { return extract_command(*a); };
}

}  // namespace aefx::cli
