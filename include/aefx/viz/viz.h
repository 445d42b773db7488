#pragma once
// Pictures of a run, drawn with OpenCV and written as PNG files (atomically, through
// util::atomic_write_text): reconstructions, training curves, the confusion matrix and a 2-D
// projection of latent codes. Without OpenCV (built with AEFX_WITH_OPENCV=OFF) available() is
// false and every writer throws std::runtime_error saying aefx was built without OpenCV.
// Nothing here uses LibTorch: callers pass plain vectors.
//
// Errors: bad arguments (counts that differ, sizes that do not match, labels out of range,
// nothing to lay out) throw std::invalid_argument naming the file and the problem; they are
// checked before anything is drawn, with or without OpenCV. A file that cannot be encoded or
// written throws std::runtime_error. Picture sizes depend only on the arguments (documented at
// each writer), so callers and tests can rely on them.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace aefx::viz {

/// True when aefx was built with OpenCV, so the writers below can draw.
bool available();

/// An 8-bit image: height x width x channels (1 = grey, 3 = RGB), row-major, interleaved.
struct Image {
  int height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;
};

/// Layout of write_reconstructions, in pixels. With c = min(columns, images) columns,
/// b = ceil(images / c) bands and tiles of (width * scale) x (height * scale):
///   width  = max(kReconMinWidth, kReconLabelWidth + c * (tile_w + 1) + 1 + kReconMargin)
///   height = kReconTitleHeight + b * (2 * tile_h + 3 + caption) + (b - 1) * kReconBandGap
///            + kReconMargin
/// where caption = kReconCaptionHeight when captions are given, else 0. Each band is a 1-pixel
/// grey line, the inputs, their captions, a line, the reconstructions, a line; 1-pixel grey lines
/// also separate the columns. The row labels sit in the kReconLabelWidth column on the left.
inline constexpr int kReconLabelWidth = 120;
inline constexpr int kReconMinWidth = 320;  ///< room for the title when the images are few
inline constexpr int kReconTitleHeight = 40;
inline constexpr int kReconCaptionHeight = 18;
inline constexpr int kReconBandGap = 10;
inline constexpr int kReconMargin = 10;

/// Input images above their reconstructions: bands of `columns` images, each band an input row
/// over a reconstruction row, every image scaled up `scale` times (nearest neighbour), a
/// caption (e.g. the class name) under each input and a title on top. `captions` is empty (no
/// caption row) or one per input; captions too wide for their image are shortened.
/// Throws std::invalid_argument when there are no inputs, inputs and outputs differ in number,
/// captions are neither empty nor one per input, columns or scale is below 1, an image's
/// channels are not 1 or 3 or its pixels do not match its size, or the images (inputs and
/// outputs alike) differ in height or width.
void write_reconstructions(const std::filesystem::path& file, const std::vector<Image>& inputs,
                           const std::vector<Image>& outputs,
                           const std::vector<std::string>& captions, const std::string& title,
                           int columns = 8, int scale = 3);

/// One line of a chart: y over x (equal lengths; NaN values are gaps).
struct Series {
  std::string label;
  std::vector<double> x, y;
};

/// A line chart with a title, labelled axes with ticks, and a legend of its series.
struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;  ///< logarithmic y axis (losses)
};

/// Sizes of write_charts: for n charts the picture is
///   width = min(2, n) * kChartWidth, height = kChartTitleHeight + ceil(n / 2) * kChartHeight.
inline constexpr int kChartWidth = 560;
inline constexpr int kChartHeight = 400;
inline constexpr int kChartTitleHeight = 44;

/// Charts in a grid, two per row, under a title. Axis limits and "nice" ticks (1, 2 or 5 x 10^k;
/// on a log axis powers of ten, or 1-2-5 or 1..9 steps when the data spans less than a few
/// decades) come from the finite data. Non-finite values (and magnitudes above 1e300), and
/// values <= 0 on a log axis, are gaps; a point with no neighbour is drawn as a marker; a chart
/// with no point to draw says "no data". The legend goes in the corner of the plot that hides the
/// fewest points. Throws std::invalid_argument when `charts` is empty or a series' x and y differ
/// in length.
void write_charts(const std::filesystem::path& file, const std::vector<Chart>& charts,
                  const std::string& title);

/// Layout of write_confusion for n classes: square cells of side kConfusionCell when n <= 12,
/// else max(24, 720 / n), and margins for the title and the accuracy header (top), the true
/// class names (left), the predicted class names (bottom) and the accuracy column (right):
///   width  = kConfusionLeft + n * cell + kConfusionRight
///   height = kConfusionTop + n * cell + kConfusionBottom
/// Class names too long for their room are shortened with a trailing '.'.
inline constexpr int kConfusionCell = 60;
inline constexpr int kConfusionLeft = 140;
inline constexpr int kConfusionRight = 100;
inline constexpr int kConfusionTop = 80;
inline constexpr int kConfusionBottom = 140;

/// Confusion-matrix heat map: rows are true classes, columns predictions; each cell shows its
/// count, coloured by its share of the row; class names on both axes, each class's accuracy
/// (recall) in a column on the right, the overall accuracy in the title. A class without
/// samples shows "-" as its accuracy. Throws std::invalid_argument when there are no classes,
/// `counts` is not n x n for n class names, or a count is negative.
void write_confusion(const std::filesystem::path& file,
                     const std::vector<std::vector<int64_t>>& counts,
                     const std::vector<std::string>& class_names, const std::string& title);

/// Size of write_scatter's picture; the legend sits right of the plot.
inline constexpr int kScatterWidth = 900;
inline constexpr int kScatterHeight = 700;

/// Scatter plot of 2-D points, one colour per class (labels index class_names), with labelled
/// axes and a legend of the class names. Points are small translucent discs drawn in a fixed
/// pseudo-random order, so that no class hides all others; non-finite points (as for charts)
/// are skipped; with no point to draw the plot says "no data". Throws std::invalid_argument
/// when there are no class names, points and labels differ in number, or a label is outside
/// [0, classes).
void write_scatter(const std::filesystem::path& file,
                   const std::vector<std::array<double, 2>>& points,
                   const std::vector<int64_t>& labels, const std::vector<std::string>& class_names,
                   const std::string& title, const std::string& x_label,
                   const std::string& y_label);

}  // namespace aefx::viz
