#include "aefx/extract/extract.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "aefx/data/dataset.h"
#include "aefx/extract/npy.h"
#include "aefx/models/features.h"
#include "aefx/util/json.h"
#include "aefx/util/runtime.h"
#include "test_util.h"

namespace aefx::extract {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

config::ModelConfig encoder_config() {
  config::ModelConfig m;
  m.widths = {4, 8};
  m.blocks = {1, 1};
  return m;
}

const models::CodeSpec kSpec({2, 1}, config::Pooling::kAvgMax);

/// Values per code of write_encoder's model.
const int64_t kDim = models::code_dim(encoder_config(), kSpec);

/// A small trained-looking encoder exported as aefx writes encoder.pt (16 x 16 inputs).
std::string write_encoder(const fs::path& file, int64_t channels = 3) {
  torch::manual_seed(3);
  const auto m = encoder_config();
  models::Autoencoder ae(m, channels, 16);
  ae->set_normalization(torch::full({channels}, 0.45f), torch::full({channels}, 0.25f));
  ae->train();
  for (int i = 0; i < 3; ++i) ae->forward(torch::randn({8, channels, 16, 16}));
  models::freeze(ae);
  auto enc = models::script_encoder(ae, kSpec);
  const util::Json meta{{"kind", "encoder"},
                        {"class_names", std::vector<std::string>{}},
                        {"input", {{"channels", channels}, {"height", 16}, {"width", 16}}},
                        {"code_dim", kDim},
                        {"pooling", "avgmax"}};
  models::save_scripted(enc, file.string(), util::dump_json(meta));
  return file.string();
}

/// The rows of a features.npy this module wrote (float32), checking the header's shape.
torch::Tensor read_npy(const fs::path& file, int64_t cols = kDim) {
  const std::string bytes = testing::read_file(file);
  EXPECT_GE(bytes.size(), static_cast<size_t>(kNpyHeaderBytes));
  const auto at = bytes.find("'shape': (");
  const int64_t rows = std::stoll(bytes.substr(at + 10));
  EXPECT_EQ(std::stoll(bytes.substr(bytes.find(", ", at) + 2)), cols);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(kNpyHeaderBytes + rows * cols * 4)) << file;
  auto t = torch::empty({rows, cols}, torch::kFloat);
  std::memcpy(t.data_ptr(), bytes.data() + kNpyHeaderBytes, static_cast<size_t>(rows * cols * 4));
  return t;
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::istringstream in(testing::read_file(file));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// encoder.pt's own output for uint8 images.
torch::Tensor reference_codes(const std::string& model, const torch::Tensor& images) {
  models::ExportedModel enc(model, "encoder");
  return enc.forward(images.to(torch::kFloat) / 255.0);
}

/// A folder of 16 x 16 PNG images (a/ and b/c/ below it), one corrupt .png and one text file.
std::vector<std::string> write_image_folder(const fs::path& dir, int64_t n, torch::Tensor* images) {
  if (!data::can_decode_images()) throw std::logic_error("write_image_folder needs OpenCV");
  auto [img, lab] = testing::synthetic_images(n, 4, 16, 5);
  std::vector<std::string> files;
  for (int64_t i = 0; i < n; ++i) {
    const fs::path f = dir / (i % 2 ? "a" : "b/c") / ("img" + std::to_string(100 + i) + ".png");
    fs::create_directories(f.parent_path());
    testing::write_png(f.string(), img[i], 16);
    files.push_back(f.string());
  }
  testing::write_bytes(dir / "a" / "broken.png", "not a png");
  testing::write_bytes(dir / "notes.txt", "not an image");
  *images = img;
  return files;
}

TEST(Npy, HeaderIsFixedSizeAndNumpyShaped) {
  const std::string h = npy_header(torch::kFloat, 12, 34);
  ASSERT_EQ(h.size(), static_cast<size_t>(kNpyHeaderBytes));
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(h[8]) + 256 * static_cast<unsigned char>(h[9]),
            kNpyHeaderBytes - 10);
  EXPECT_NE(h.find("{'descr': '<f4', 'fortran_order': False, 'shape': (12, 34), }"),
            std::string::npos);
  EXPECT_EQ(h.back(), '\n');
  EXPECT_NE(npy_header(torch::kHalf, 1, 2).find("'<f2'"), std::string::npos);
  EXPECT_EQ(npy_header(torch::kFloat, int64_t{1} << 50, 1 << 20).size(),
            static_cast<size_t>(kNpyHeaderBytes));
}

TEST(Npy, RowsAppendTruncateAndReopen) {
  TempDir dir;
  const auto file = dir / "f.npy";
  auto a = torch::rand({3, 5});
  {
    NpyRowFile npy(file, torch::kFloat, 5, 0);
    npy.append(a);
    npy.append(a * 2);
    EXPECT_EQ(npy.rows(), 6);
    npy.truncate(4);
  }
  auto back = read_npy(file, 5);
  ASSERT_EQ(back.size(0), 4);
  EXPECT_TRUE(torch::equal(back.narrow(0, 0, 3), a));
  {
    NpyRowFile npy(file, torch::kFloat, 5, 3);  // resume keeping 3 rows
    npy.append(a);
  }
  EXPECT_TRUE(torch::equal(read_npy(file, 5), torch::cat({a, a})));
  EXPECT_THROW(NpyRowFile(file, torch::kFloat, 6, 3), std::runtime_error);  // other columns
  EXPECT_THROW(NpyRowFile(file, torch::kHalf, 5, 3), std::runtime_error);   // other dtype
  EXPECT_EQ(read_npy(file, 5).size(0), 6) << "a refused reopen must not cut the file";
}

TEST(AppendFile, FailedWriteLeavesTheLastWholeAppend) {
  TempDir dir;
  const auto file = dir / "f.bin";
  util::AppendFile f(file, 0);
  const std::string chunk(4096, 'x');
  f.append(chunk.data(), chunk.size());
  // A file-size limit makes the next write fail as a full disk would (EFBIG, SIGXFSZ ignored).
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto previous = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 6000;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  try {
    f.append(chunk.data(), chunk.size());
    ADD_FAILURE() << "the write over the limit succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
  EXPECT_EQ(f.size(), 4096);
  EXPECT_EQ(fs::file_size(file), 4096u);
}

TEST(Extract, RowsEqualTheExportedEncoderAndSkipUnreadableFiles) {
  if (!data::can_decode_images()) GTEST_SKIP() << "built without OpenCV: no image files";
  TempDir dir;
  const auto model = write_encoder(dir / "encoder.pt");
  torch::Tensor images;
  const auto files = write_image_folder(dir / "imgs", 11, &images);
  const auto inputs = inputs_from_paths({(dir / "imgs").string()});
  ASSERT_EQ(inputs.size(), 12);  // 11 images and broken.png; notes.txt is not an image name

  models::ExportedModel enc(model, "encoder");
  Options o;
  o.out = (dir / "out").string();
  o.batch_size = 4;
  o.workers = 2;
  const auto r = extract(enc, inputs, o);
  EXPECT_EQ(r.rows, 11);
  EXPECT_EQ(r.skipped, 1);

  const auto lines = lines_of(dir / "out" / kIndexFile);
  ASSERT_EQ(lines.size(), 12u);
  EXPECT_EQ(lines[0], "row,path,label");
  // Rows follow the sorted paths; each row is encoder.pt's output for its file's image.
  std::vector<int64_t> order;
  for (size_t k = 1; k < lines.size(); ++k) {
    const auto comma = lines[k].find(',');
    EXPECT_EQ(lines[k].substr(0, comma), std::to_string(k - 1));
    const std::string path = lines[k].substr(comma + 1, lines[k].rfind(',') - comma - 1);
    const auto at = std::find(files.begin(), files.end(), path);
    ASSERT_NE(at, files.end()) << path;
    order.push_back(at - files.begin());
    EXPECT_EQ(lines[k].back(), ',') << "labels are unknown for plain files";
  }
  const auto rows = read_npy(dir / "out" / kFeaturesFile);
  const auto want = reference_codes(model, images.index_select(0, torch::tensor(order)));
  EXPECT_LE((rows - want).abs().max().item<double>(), 1e-5);

  const auto meta = util::read_json_file(dir / "out" / kMetaFile);
  EXPECT_EQ(meta["rows"], 11);
  EXPECT_EQ(meta["code_dim"], kDim);
  EXPECT_EQ(meta["dtype"], "float32");
  ASSERT_EQ(meta["skipped"].size(), 1u);
  EXPECT_NE(meta["skipped"][0]["path"].get<std::string>().find("broken.png"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out" / kStateFile));
}

TEST(Extract, DataSetRecordsAreNamedAndLabelledAndGreyModelsGetGreyImages) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 3, 7);
  const auto model = write_encoder(dir / "encoder.pt", 1);
  models::ExportedModel enc(model, "encoder");
  config::DataConfig dc;
  dc.root = (dir / "data").string();
  dc.image_size = 16;
  auto inputs = inputs_from_data(dc, data::Split::kTest);
  ASSERT_EQ(inputs.size(), 7);
  // Colour records for a grey model: converted batch by batch.
  Options o;
  o.out = (dir / "out").string();
  o.batch_size = 3;
  o.dtype = torch::kHalf;
  extract(enc, inputs, o);
  const auto lines = lines_of(dir / "out" / kIndexFile);
  ASSERT_EQ(lines.size(), 8u);
  const auto test = data::load_split(dc, data::Split::kTest, 0);
  const std::string batch = (dir / "data" / "cifar-10-batches-bin" / "test_batch.bin").string();
  EXPECT_EQ(lines[3], "2," + batch + "#2," +
                          test.class_names[static_cast<size_t>(test.labels[2].item<int64_t>())]);
  const std::string bytes = testing::read_file(dir / "out" / kFeaturesFile);
  ASSERT_EQ(bytes.size(), static_cast<size_t>(kNpyHeaderBytes + 7 * kDim * 2));
  auto half = torch::empty({7, kDim}, torch::kHalf);
  std::memcpy(half.data_ptr(), bytes.data() + kNpyHeaderBytes, 7 * kDim * 2);
  const auto want = reference_codes(model, data::to_channels(test.images, 1));
  EXPECT_LE((half.to(torch::kFloat) - want).abs().max().item<double>(),
            1e-2 * want.abs().max().item<double>() + 1e-3);
}

TEST(Extract, StoppedExtractionResumesToTheSameFiles) {
  if (!data::can_decode_images()) GTEST_SKIP() << "built without OpenCV: no image files";
  TempDir dir;
  const auto model = write_encoder(dir / "encoder.pt");
  torch::Tensor images;
  write_image_folder(dir / "imgs", 13, &images);
  const auto inputs = inputs_from_paths({(dir / "imgs").string()});
  Options o;
  o.batch_size = 4;
  o.out = (dir / "whole").string();
  {
    models::ExportedModel enc(model, "encoder");
    extract(enc, inputs, o);
  }
  // A signal that arrived during the first batch stops the extraction after it.
  o.out = (dir / "stopped").string();
  util::set_interrupt_signal(SIGINT);
  {
    models::ExportedModel enc(model, "encoder");
    EXPECT_THROW(extract(enc, inputs, o), util::Interrupted);
  }
  util::set_interrupt_signal(0);
  // The first batch holds a/broken.png (sorted first), skipped: 3 rows.
  EXPECT_EQ(read_npy(dir / "stopped" / kFeaturesFile).size(0), 3);
  EXPECT_EQ(lines_of(dir / "stopped" / kIndexFile).size(), 4u);
  {
    models::ExportedModel enc(model, "encoder");
    EXPECT_THROW(extract(enc, inputs, o), std::invalid_argument) << "exists, no --resume";
    o.resume = true;
    auto other = inputs;
    other.names.pop_back();
    other.labels.pop_back();
    EXPECT_THROW(extract(enc, other, o), std::invalid_argument) << "other inputs";
    const auto r = extract(enc, inputs, o);
    EXPECT_EQ(r.resumed_from, 4);
    EXPECT_EQ(r.rows, 13);  // 13 images; broken.png takes no row
    EXPECT_TRUE(extract(enc, inputs, o).already_complete);
  }
  for (const char* f : {kFeaturesFile, kIndexFile}) {
    EXPECT_EQ(testing::read_file(dir / "stopped" / f), testing::read_file(dir / "whole" / f)) << f;
  }
}

TEST(Extract, FailedWriteKeepsRowsAndIndexConsistentAndResumable) {
  TempDir dir;
  const auto model = write_encoder(dir / "encoder.pt");
  testing::write_cifar_binary(dir / "data", 3, 40);
  config::DataConfig dc;
  dc.root = (dir / "data").string();
  dc.image_size = 16;
  const auto inputs = inputs_from_data(dc, data::Split::kTest);
  Options o;
  o.batch_size = 8;
  o.out = (dir / "out").string();
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto previous = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = static_cast<rlim_t>(kNpyHeaderBytes + 20 * kDim * 4);  // room for 20 rows
  {
    models::ExportedModel enc(model, "encoder");
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    try {
      extract(enc, inputs, o);
      ADD_FAILURE() << "the extraction did not hit the limit";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("features.npy"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
  }
  std::signal(SIGXFSZ, previous);
  // Two whole batches of 8 fit; the third's rows were cut back, and its index lines never written.
  EXPECT_EQ(read_npy(dir / "out" / kFeaturesFile).size(0), 16);
  EXPECT_EQ(lines_of(dir / "out" / kIndexFile).size(), 17u);
  o.resume = true;
  models::ExportedModel enc(model, "encoder");
  EXPECT_EQ(extract(enc, inputs, o).rows, 40);
  const auto rows = read_npy(dir / "out" / kFeaturesFile);
  EXPECT_LE((rows - reference_codes(model, inputs.images)).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(lines_of(dir / "out" / kIndexFile).size(), 41u);
}

TEST(Extract, BadInputIsNamed) {
  TempDir dir;
  EXPECT_THROW(inputs_from_paths({}), std::invalid_argument);
  EXPECT_THROW(inputs_from_paths({(dir / "missing.png").string()}), std::invalid_argument);
  fs::create_directories(dir / "empty" / "sub");
  testing::write_bytes(dir / "empty" / "sub" / "readme.txt", "x");
  try {
    inputs_from_paths({(dir / "empty").string()});
    ADD_FAILURE() << "a folder without images was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("holds no image file"), std::string::npos) << e.what();
  }
  testing::write_bytes(dir / "junk.pt", "junk");
  EXPECT_THROW(models::ExportedModel((dir / "junk.pt").string(), "encoder"), std::runtime_error);
  EXPECT_THROW(encoder_file(dir.path().string()), std::runtime_error);  // no encoder.pt there
}

}  // namespace
}  // namespace aefx::extract
