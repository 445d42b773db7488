// aefx predict: classify image files with an exported classifier.pt.
#include <torch/torch.h>

#include <iostream>
#include <memory>

#include "aefx/data/preprocess.h"
#include "aefx/models/torchscript.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "cli.h"

namespace aefx::cli {
namespace {

struct PredictArgs {
  std::string model;
  std::vector<std::string> images;
  int64_t top_k = 3;
  bool json = false;
};

int predict(const PredictArgs& a) {
  if (a.model.empty()) throw UsageError("missing --model (an exported classifier.pt)");
  if (a.images.empty()) throw UsageError("predict needs at least one image file");
  models::ExportedClassifier clf(a.model);
  const auto k = std::min<int64_t>(a.top_k, static_cast<int64_t>(clf.class_names().size()));
  util::Json out = util::Json::array();
  for (const auto& file : a.images) {
    const auto x = data::load_model_input(file, {clf.channels(), clf.image_size()});
    auto probs = torch::softmax(clf.logits(x), 1)[0];
    auto [p, idx] = probs.topk(k);
    util::Json top = util::Json::array();
    std::string line = file + ":";
    for (int64_t j = 0; j < k; ++j) {
      const auto& name = clf.class_names()[static_cast<size_t>(idx[j].item<int64_t>())];
      top.push_back(util::Json::object({{"class", name}, {"probability", p[j].item<double>()}}));
      line += util::strfmt(" %s %.3f%s", name.c_str(), p[j].item<double>(), j + 1 < k ? "," : "");
    }
    if (a.json) {
      out.push_back(util::Json::object({{"file", file}, {"top", top}}));
    } else {
      std::cout << line << "\n";
    }
  }
  if (a.json) std::cout << util::dump_json(out) << "\n";
  return 0;
}

}  // namespace

Action setup_predict(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  set_help(app, "--model classifier.pt IMAGE... [--top-k K] [--json]",
           "Decodes each image (any size, colour or grey), converts it to the model's input\n"
           "(model.json: size, and channels: a colour image to grey for a grey model, a grey\n"
           "one to RGB for a colour model) and prints its top-k classes with probabilities.",
           "examples:\n"
           "  aefx predict --model models/cifar10-cpu/classifier.pt cat.png\n"
           "  aefx predict --model models/cifar10-cpu/classifier.pt *.jpg --top-k 1 --json\n");
  app.add_option("IMAGE", a->images, "image files");
  app.add_option("--model", a->model, "an exported classifier (aefx run's export stage)")
      ->type_name("FILE");
  app.add_option("--top-k", a->top_k, "classes per image (default 3)")
      ->type_name("K")
      ->check(expects(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()),
                      "a positive integer"));
  app.add_flag("--json", a->json, "print one JSON array instead of a line per image");
  return [a] { return predict(*a); };
}

}  // namespace aefx::cli
