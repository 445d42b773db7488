// aefx evaluate: test accuracy of an exported classifier.pt on a data set.
#include <torch/torch.h>

#include <iostream>
#include <memory>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/metrics/metrics.h"
#include "aefx/models/torchscript.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "cli.h"

namespace aefx::cli {
namespace {

struct EvaluateArgs {
  std::string model, data, format = "cifar10-binary";
  metrics::AccuracyOptions accuracy;
  bool json = false;
};

int evaluate(const EvaluateArgs& a) {
  if (a.model.empty()) throw UsageError("missing --model (an exported classifier.pt)");
  if (a.data.empty()) throw UsageError("evaluate needs --data DIR (the data set's root)");
  util::configure_threads(0);
  models::ExportedClassifier clf(a.model);
  config::DataConfig dc;
  dc.root = a.data;
  dc.format = config::from_name<config::DataFormat>(a.format).value();  // checked by --format
  dc.image_size = clf.image_size();
  if (dc.format == config::DataFormat::kIdx) dc.class_names = clf.class_names();
  auto test = data::load_split(dc, data::Split::kTest, 0);
  // Colour data for a grey model, or grey data for a colour one: converted as predict does.
  test.images = data::to_channels(test.images, clf.channels());
  if (test.class_names != clf.class_names()) {
    throw std::runtime_error("the data set's classes differ from the model's (" +
                             std::to_string(test.class_names.size()) + " vs " +
                             std::to_string(clf.class_names().size()) + ")");
  }
  const double acc =
      metrics::classifier_accuracy([&clf](const torch::Tensor& x) { return clf.logits(x); },
                                   test.images, test.labels, a.accuracy);
  if (a.json) {
    std::cout << util::dump_json(
                     util::Json::object({{"test_accuracy", acc}, {"test_images", test.size()}}), -1)
              << "\n";
  } else {
    std::cout << util::strfmt("test accuracy %.4f on %lld images\n", acc,
                              static_cast<long long>(test.size()));
  }
  return 0;
}

}  // namespace

Action setup_evaluate(CLI::App& app) {
  auto a = std::make_shared<EvaluateArgs>();
  set_help(app, "--model classifier.pt --data DIR [options]",
           "Test accuracy of an exported classifier on a data set's test split. IDX files\n"
           "name no classes: their labels are read as the model's classes, in order.",
           "examples:\n"
           "  aefx evaluate --model models/cifar10-cpu/classifier.pt --data data/cifar10\n"
           "  aefx evaluate --model models/cifar10-cpu/classifier.pt --data photos "
           "--format image-folder --json\n");
  app.add_option("--model", a->model, "an exported classifier (aefx run's export stage)")
      ->type_name("FILE");
  app.add_option("--data", a->data, "the data set's root folder")->type_name("DIR");
  app.add_option("--format", a->format, "cifar10-binary (default), image-folder or idx")
      ->type_name("FORMAT")
      ->check(expects(CLI::IsMember(config::known_values("data.format")),
                      config::names_of<config::DataFormat>(", ")));
  app.add_option("--batch", a->accuracy.batch_size,
                 "images per forward pass (default 500); memory, not the result")
      ->type_name("N")
      ->check(integer_at_least(1));
  app.add_flag("--json", a->json, "print {\"test_accuracy\": ..., \"test_images\": ...}");
  return [a] { return evaluate(*a); };
}

}  // namespace aefx::cli
