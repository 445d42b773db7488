// Image-folder reader: root/{train,test}/<class>/<image>, decoded with OpenCV.
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string_view>

#include "aefx/data/dataset.h"
#include "aefx/util/log.h"
#include "aefx/util/parallel.h"

#ifdef AEFX_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace aefx::data {
namespace fs = std::filesystem;

bool is_image_file_name(const std::string& file) {
  std::string ext = fs::path(file).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const std::vector<std::string> kExts{".png", ".jpg", ".jpeg", ".bmp",  ".ppm",
                                              ".pgm", ".pbm", ".tif",  ".tiff", ".webp"};
  return std::find(kExts.begin(), kExts.end(), ext) != kExts.end();
}

std::vector<std::string> find_images(const std::string& dir, int64_t* others) {
  if (!fs::is_directory(dir)) throw std::runtime_error("image folder " + dir + " does not exist");
  std::vector<std::string> files;
  int64_t skipped = 0;
  std::error_code ec;
  const auto opts = fs::directory_options::follow_directory_symlink |
                    fs::directory_options::skip_permission_denied;
  for (fs::recursive_directory_iterator it(dir, opts, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    if (is_image_file_name(it->path().string())) {
      files.push_back(it->path().string());
    } else {
      ++skipped;
    }
  }
  if (ec) throw std::runtime_error("cannot list image folder " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  if (others) *others = skipped;
  return files;
}

namespace {

std::vector<std::string> sorted_subdirs(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory()) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

ImageList list_image_folder(const std::string& root, Split split) {
  const std::string split_name = split == Split::kTrain ? "train" : "test";
  const fs::path dir = fs::path(root) / split_name;
  if (!fs::is_directory(dir)) {
    throw std::runtime_error("image folder " + dir.string() + " does not exist (expected " + root +
                             "/{train,test}/<class>/<images>)");
  }
  ImageList list;
  list.class_names = sorted_subdirs(dir);
  const auto& classes = list.class_names;
  if (classes.empty())
    throw std::runtime_error("image folder " + dir.string() + " has no class folders");
  // Test classes must be exactly the train classes, or labels would silently mean other things.
  const fs::path train_dir = fs::path(root) / "train";
  if (split == Split::kTest && fs::is_directory(train_dir)) {
    const auto train_classes = sorted_subdirs(train_dir);
    for (const auto& c : train_classes) {
      if (std::find(classes.begin(), classes.end(), c) == classes.end()) {
        throw std::runtime_error("image folder " + dir.string() + " is missing class folder '" + c +
                                 "' that train has");
      }
    }
    for (const auto& c : classes) {
      if (std::find(train_classes.begin(), train_classes.end(), c) == train_classes.end()) {
        throw std::runtime_error("image folder " + dir.string() + " has class folder '" + c +
                                 "' that train does not have");
      }
    }
  }
  int64_t skipped = 0;
  for (size_t k = 0; k < classes.size(); ++k) {
    std::vector<std::string> in_class;
    for (const auto& e : fs::directory_iterator(dir / classes[k])) {
      if (!e.is_regular_file()) continue;
      if (is_image_file_name(e.path().string())) {
        in_class.push_back(e.path().string());
      } else {
        ++skipped;
      }
    }
    if (in_class.empty()) {
      throw std::runtime_error("class folder " + (dir / classes[k]).string() + " has no images");
    }
    std::sort(in_class.begin(), in_class.end());
    for (auto& f : in_class) {
      list.files.push_back(std::move(f));
      list.labels.push_back(static_cast<int64_t>(k));
    }
  }
  if (skipped > 0) {
    util::log_warn("skipped " + std::to_string(skipped) + " non-image file(s) under " +
                   dir.string());
  }
  return list;
}

#ifdef AEFX_HAVE_OPENCV
namespace {

/// Whether the file starts like one of the formats of is_image_file_name. cv::imread picks its
/// decoder by content, not name, so without this check any file would also reach every other
/// decoder OpenCV was built with: GDAL (all its drivers) for a file starting "NITF", GDCM for
/// DICOM, OpenJPEG, Radiance HDR, PAM, PFM, Sun raster. Two of them look further in: DICOM ("DICM"
/// at byte 128, GDCM, which aborts the process on some malformed files) and DTED ("DTED" at byte
/// 140, GDAL); a file that also carries either mark is refused, whatever it starts with.
bool has_image_signature(const fs::path& file) {
  char bytes[144] = {};
  std::ifstream in(file, std::ios::binary);
  in.read(bytes, sizeof bytes);
  const std::string_view all(bytes, static_cast<size_t>(in.gcount()));
  using namespace std::string_view_literals;
  auto mark_at = [&](size_t at, std::string_view mark) {
    return all.size() >= at + mark.size() && all.substr(at, mark.size()) == mark;
  };
  if (mark_at(128, "DICM"sv) || mark_at(140, "DTED"sv)) return false;
  const std::string_view head = all.substr(0, std::min<size_t>(12, all.size()));
  auto starts = [&](std::string_view sig) { return head.substr(0, sig.size()) == sig; };
  return starts("\x89PNG\r\n\x1a\n"sv) || starts("\xff\xd8\xff"sv) || starts("BM"sv) ||
         (head.size() >= 3 && head[0] == 'P' && head[1] >= '1' && head[1] <= '6') ||  // PBM/PGM/PPM
         starts("II*\0"sv) || starts("MM\0*"sv) || starts("II+\0"sv) || starts("MM\0+"sv) ||
         (starts("RIFF"sv) && head.size() == 12 && head.substr(8) == "WEBP"sv);
}

}  // namespace

/// Decodes one file to RGB uint8 size x size (HWC), converting grey and alpha images.
static void decode_into(const fs::path& file, int size, uint8_t* dst) {
  if (!has_image_signature(file)) {
    throw std::runtime_error("cannot decode image " + file.string() +
                             ": not a PNG, JPEG, BMP, PBM/PGM/PPM, TIFF or WebP file");
  }
  cv::Mat img;
  try {
    img = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    // imread throws, rather than returning an empty image, for a header whose size is over
    // OpenCV's limits (OPENCV_IO_MAX_IMAGE_WIDTH, _HEIGHT, _PIXELS).
    throw std::runtime_error("cannot decode image " + file.string() + ": OpenCV: " + e.err);
  }
  if (img.empty()) throw std::runtime_error("cannot decode image " + file.string());
  if (img.depth() != CV_8U) {
    cv::Mat eight;
    img.convertTo(eight, CV_8U, img.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
    img = eight;
  }
  cv::Mat rgb;
  switch (img.channels()) {
    case 1:
      cv::cvtColor(img, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 3:
      cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:
      cv::cvtColor(img, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      throw std::runtime_error("image " + file.string() + " has " + std::to_string(img.channels()) +
                               " channels; expected 1, 3 or 4");
  }
  if (rgb.rows != size || rgb.cols != size) {
    cv::Mat resized;
    const bool shrink = rgb.rows > size || rgb.cols > size;
    cv::resize(rgb, resized, cv::Size(size, size), 0, 0,
               shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
    rgb = resized;
  }
  if (!rgb.isContinuous()) rgb = rgb.clone();
  std::memcpy(dst, rgb.data, static_cast<size_t>(size) * size * 3);
}

bool can_decode_images() { return true; }

torch::Tensor decode_image(const std::string& file, int64_t size) {
  if (!fs::exists(file)) throw std::runtime_error("image " + file + " does not exist");
  auto hwc = torch::empty({size, size, 3}, torch::kUInt8);
  decode_into(file, static_cast<int>(size), hwc.data_ptr<uint8_t>());
  return hwc.permute({2, 0, 1}).contiguous();
}

Dataset load_image_folder(const std::string& root, Split split, int64_t size) {
  const ImageList list = list_image_folder(root, split);
  const auto& files = list.files;
  const auto n = static_cast<int64_t>(files.size());
  auto hwc = torch::empty({n, size, size, 3}, torch::kUInt8);
  uint8_t* base = hwc.data_ptr<uint8_t>();
  const size_t stride = static_cast<size_t>(size) * size * 3;
  util::parallel_for_each(n, [&](int64_t i) {
    decode_into(files[static_cast<size_t>(i)], static_cast<int>(size), base + stride * i);
  });
  return Dataset{hwc.permute({0, 3, 1, 2}).contiguous(), torch::tensor(list.labels, torch::kLong),
                 list.class_names};
}

#else

bool can_decode_images() { return false; }

torch::Tensor decode_image(const std::string& file, int64_t) {
  throw std::runtime_error("cannot decode " + file +
                           ": aefx was built without OpenCV; rebuild with OpenCV installed");
}

Dataset load_image_folder(const std::string& root, Split, int64_t) {
  throw std::runtime_error("data.format image-folder (" + root +
                           "): aefx was built without OpenCV; rebuild with OpenCV installed "
                           "(-DAEFX_WITH_OPENCV=ON) or use data.format cifar10-binary");
}

#endif

}  // namespace aefx::data
