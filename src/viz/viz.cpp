#include "aefx/viz/viz.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <utility>

#include "aefx/util/fs.h"

#ifdef AEFX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace aefx::viz {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad_argument(const fs::path& file, const std::string& problem) {
  throw std::invalid_argument("cannot draw " + file.string() + ": " + problem);
}

// ---------------------------------------------------------------------------------------------
// Argument checks: plain C++, so that both builds report bad arguments the same way.

void check_image(const fs::path& file, const Image& image, const std::string& name) {
  if (image.height < 1 || image.width < 1) {
    bad_argument(file, name + " is empty (" + std::to_string(image.height) + "x" +
                           std::to_string(image.width) + ")");
  }
  if (image.channels != 1 && image.channels != 3) {
    bad_argument(file,
                 name + " has " + std::to_string(image.channels) + " channels (expected 1 or 3)");
  }
  const size_t expected = size_t(image.height) * size_t(image.width) * size_t(image.channels);
  if (image.pixels.size() != expected) {
    bad_argument(file, name + " is " + std::to_string(image.height) + "x" +
                           std::to_string(image.width) + "x" + std::to_string(image.channels) +
                           " but has " + std::to_string(image.pixels.size()) + " bytes (expected " +
                           std::to_string(expected) + ")");
  }
}

void check_reconstructions(const fs::path& file, const std::vector<Image>& inputs,
                           const std::vector<Image>& outputs,
                           const std::vector<std::string>& captions, int columns, int scale) {
  if (inputs.empty()) bad_argument(file, "no images");
  if (inputs.size() != outputs.size()) {
    bad_argument(file, std::to_string(inputs.size()) + " inputs but " +
                           std::to_string(outputs.size()) + " outputs");
  }
  if (!captions.empty() && captions.size() != inputs.size()) {
    bad_argument(file, std::to_string(captions.size()) + " captions for " +
                           std::to_string(inputs.size()) + " inputs");
  }
  if (columns < 1) bad_argument(file, "columns must be at least 1, got " + std::to_string(columns));
  if (scale < 1) bad_argument(file, "scale must be at least 1, got " + std::to_string(scale));
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_image(file, inputs[i], "input " + std::to_string(i));
    check_image(file, outputs[i], "output " + std::to_string(i));
  }
  const int h = inputs[0].height, w = inputs[0].width;
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (const auto* image : {&inputs[i], &outputs[i]}) {
      if (image->height != h || image->width != w) {
        bad_argument(file, std::string(image == &inputs[i] ? "input " : "output ") +
                               std::to_string(i) + " is " + std::to_string(image->height) + "x" +
                               std::to_string(image->width) + " but input 0 is " +
                               std::to_string(h) + "x" + std::to_string(w) +
                               ": all images must have the same size");
      }
    }
  }
}

void check_charts(const fs::path& file, const std::vector<Chart>& charts) {
  if (charts.empty()) bad_argument(file, "no charts");
  for (const auto& chart : charts) {
    for (const auto& s : chart.series) {
      if (s.x.size() != s.y.size()) {
        bad_argument(file, "chart '" + chart.title + "', series '" + s.label +
                               "': " + std::to_string(s.x.size()) + " x values but " +
                               std::to_string(s.y.size()) + " y values");
      }
    }
  }
}

void check_confusion(const fs::path& file, const std::vector<std::vector<int64_t>>& counts,
                     const std::vector<std::string>& class_names) {
  if (class_names.empty()) bad_argument(file, "no classes");
  const size_t n = class_names.size();
  if (counts.size() != n) {
    bad_argument(file, std::to_string(n) + " class names but " + std::to_string(counts.size()) +
                           " rows of counts");
  }
  for (size_t r = 0; r < n; ++r) {
    if (counts[r].size() != n) {
      bad_argument(file, "row " + std::to_string(r) + " has " + std::to_string(counts[r].size()) +
                             " counts, expected " + std::to_string(n) +
                             " (the matrix must be square, one row and column per class)");
    }
    for (size_t c = 0; c < n; ++c) {
      if (counts[r][c] < 0) {
        bad_argument(file, "count [" + std::to_string(r) + "][" + std::to_string(c) +
                               "] is negative (" + std::to_string(counts[r][c]) + ")");
      }
    }
  }
}

void check_scatter(const fs::path& file, const std::vector<std::array<double, 2>>& points,
                   const std::vector<int64_t>& labels,
                   const std::vector<std::string>& class_names) {
  if (class_names.empty()) bad_argument(file, "no class names");
  if (points.size() != labels.size()) {
    bad_argument(file, std::to_string(points.size()) + " points but " +
                           std::to_string(labels.size()) + " labels");
  }
  const auto classes = int64_t(class_names.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      bad_argument(file, "label " + std::to_string(labels[i]) + " of point " + std::to_string(i) +
                             " is out of range (" + std::to_string(classes) + " classes)");
    }
  }
}

#ifndef AEFX_HAVE_OPENCV

[[noreturn]] void no_opencv(const fs::path& file) {
  throw std::runtime_error("cannot draw " + file.string() +
                           ": aefx was built without OpenCV (AEFX_WITH_OPENCV=OFF)");
}

#else

// ---------------------------------------------------------------------------------------------
// Drawing helpers. Everything is drawn in BGR (OpenCV's order) on a white background.

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kTitleScale = 0.7;
constexpr double kChartTitleScale = 0.62;
constexpr double kHeadScale = 0.55;   // axis titles
constexpr double kLabelScale = 0.45;  // tick labels, legends, class names
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kText(40, 40, 40);
const cv::Scalar kMuted(110, 110, 110);
const cv::Scalar kFrame(120, 120, 120);
const cv::Scalar kGrid(226, 226, 226);
const cv::Scalar kMinorGrid(243, 243, 243);
const cv::Scalar kSeparator(150, 150, 150);

// matplotlib's tab10, in RGB.
constexpr unsigned char kTab10[10][3] = {
    {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

// Colour k of a palette that starts with tab10 and goes on with evenly spread hues.
cv::Scalar palette(size_t k) {
  if (k < 10) return cv::Scalar(kTab10[k][2], kTab10[k][1], kTab10[k][0]);
  // Golden-ratio hue steps keep neighbouring classes apart; value alternates for more contrast.
  const double hue = std::fmod(0.13 + double(k - 10) * 0.618033988749895, 1.0) * 180.0;
  cv::Mat3b hsv(1, 1, cv::Vec3b(uchar(hue), 200, uchar(k % 2 ? 170 : 220)));
  cv::Mat3b bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto& p = bgr(0, 0);
  return cv::Scalar(p[0], p[1], p[2]);
}

enum class HAlign { kLeft, kCenter, kRight };
enum class VAlign { kTop, kMiddle, kBaseline };

cv::Size text_size(const std::string& text, double scale, int thickness = 1) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, thickness, &baseline);
}

// Shortens `text` until it is at most `max_width` pixels wide: names get a trailing '.'
// ("automob."), sentences such as titles "..." after the last whole word that fits.
std::string fit_text(const std::string& text, int max_width, double scale, int thickness = 1,
                     bool sentence = false) {
  if (text_size(text, scale, thickness).width <= max_width) return text;
  const std::string mark = sentence ? "..." : ".";
  std::string cut = text;
  while (!cut.empty()) {
    cut.pop_back();
    if (sentence) {
      const size_t space = cut.find_last_of(' ');
      cut = space == std::string::npos ? cut : cut.substr(0, space);
    }
    while (!cut.empty() && cut.back() == ' ') cut.pop_back();
    if (text_size(cut + mark, scale, thickness).width <= max_width) return cut + mark;
  }
  return "";
}

// Draws `text` anchored at `at`: horizontally by `h`; vertically its top, middle (of the capital
// letters) or baseline at at.y.
void draw_text(cv::Mat& img, const std::string& text, cv::Point at, double scale,
               const cv::Scalar& color, HAlign h = HAlign::kLeft, VAlign v = VAlign::kBaseline,
               int thickness = 1) {
  if (text.empty()) return;
  const cv::Size size = text_size(text, scale, thickness);
  int x = at.x, y = at.y;
  if (h == HAlign::kCenter) x -= size.width / 2;
  if (h == HAlign::kRight) x -= size.width;
  if (v == VAlign::kTop) y += size.height;
  if (v == VAlign::kMiddle) y += size.height / 2;
  cv::putText(img, text, cv::Point(x, y), kFont, scale, color, thickness, cv::LINE_AA);
}

// Draws `text` turned 90 degrees counter-clockwise (reading bottom-up), centred on center.x;
// vertically centred on center.y, or with its end (the top) at center.y when `end_at` is set. It is
// composed with min() so that dark text on a light picture keeps the lines under it.
void draw_text_up(cv::Mat& img, const std::string& text, cv::Point center, double scale,
                  const cv::Scalar& color, bool end_at = false) {
  if (text.empty()) return;
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, 1, &baseline);
  cv::Mat flat(size.height + baseline + 4, size.width + 4, img.type(), kWhite);
  cv::putText(flat, text, cv::Point(2, 2 + size.height), kFont, scale, color, 1, cv::LINE_AA);
  cv::Mat up;
  cv::rotate(flat, up, cv::ROTATE_90_COUNTERCLOCKWISE);
  // Centre on the capital letters, not on the box that includes descenders.
  const int cap_center = 2 + size.height / 2;
  const int x = center.x - cap_center;
  const int y = end_at ? center.y - 2 : center.y - up.rows / 2;
  const cv::Rect target = cv::Rect(x, y, up.cols, up.rows) & cv::Rect(0, 0, img.cols, img.rows);
  if (target.empty()) return;
  cv::Mat src = up(cv::Rect(target.x - x, target.y - y, target.width, target.height));
  cv::Mat dst = img(target);
  cv::min(dst, src, dst);
}

// Blends a disc of radius `r` centred at (cx, cy) into img with opacity `alpha`, with an
// anti-aliased edge, inside `clip` only.
void blend_disc(cv::Mat3b& img, double cx, double cy, double r, const cv::Scalar& color,
                double alpha, const cv::Rect& clip) {
  const int x0 = std::max(clip.x, int(std::floor(cx - r - 1)));
  const int x1 = std::min(clip.x + clip.width - 1, int(std::ceil(cx + r + 1)));
  const int y0 = std::max(clip.y, int(std::floor(cy - r - 1)));
  const int y1 = std::min(clip.y + clip.height - 1, int(std::ceil(cy + r + 1)));
  for (int y = y0; y <= y1; ++y) {
    auto* row = img.ptr<cv::Vec3b>(y);
    for (int x = x0; x <= x1; ++x) {
      const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      const double a = alpha * std::clamp(r + 0.5 - d, 0.0, 1.0);
      if (a <= 0) continue;
      for (int c = 0; c < 3; ++c) {
        row[x][c] = cv::saturate_cast<uchar>(row[x][c] * (1 - a) + color[c] * a);
      }
    }
  }
}

void write_png(const fs::path& file, const cv::Mat& img) {
  std::vector<uchar> bytes;
  bool ok = false;
  try {
    ok = cv::imencode(".png", img, bytes);
  } catch (const cv::Exception& e) {
    throw std::runtime_error("cannot encode " + file.string() + " as PNG: " + e.what());
  }
  if (!ok) throw std::runtime_error("cannot encode " + file.string() + " as PNG");
  util::atomic_write_text(file, std::string(bytes.begin(), bytes.end()));
}

// ---------------------------------------------------------------------------------------------
// Axes: limits, ticks and their labels.

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks, minor;
  std::vector<std::string> labels;

  // Position of v along the axis, 0 at lo and 1 at hi.
  double frac(double v) const {
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

// The 1, 2 or 5 x 10^k step that cuts `span` into about `target` parts.
double nice_step(double span, int target) {
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

// Scientific notation without padding zeros in the exponent: 2.45e6, 1e-5.
std::string short_exponent(std::string text) {
  const size_t e = text.find('e');
  if (e == std::string::npos) return text;
  std::string exponent = text.substr(e + 1);
  const bool negative = exponent[0] == '-';
  exponent.erase(0, exponent.find_first_not_of("+-0"));
  return text.substr(0, e) + "e" + (negative ? "-" : "") + (exponent.empty() ? "0" : exponent);
}

// A tick label with exactly the digits that the step needs, so that 0.3 never reads
// 0.30000000004 and neighbouring labels never read the same. `largest` is the largest magnitude
// on the axis: very large or very fine axes use scientific notation for all their labels.
std::string format_tick(double v, double step, double largest) {
  char buf[48];
  if (std::abs(v) < step * 1e-6) v = 0;  // no "-0"
  const int step_digit = int(std::floor(std::log10(step) + 1e-9));
  if (std::max(largest, step) >= 1e6 || step < 1e-4) {
    if (v == 0) return "0";
    const int digits = std::max(0, int(std::floor(std::log10(std::abs(v)) + 1e-9)) - step_digit);
    std::snprintf(buf, sizeof buf, "%.*e", digits, v);
    return short_exponent(buf);
  }
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -step_digit), v);
  return buf;
}

// Linear ticks at multiples of a nice step inside [lo, hi]. When the step is too fine for
// doubles to count in (a tiny span far from zero), just the two ends, labelled in full.
void linear_ticks(Axis& axis, double step) {
  const double first = std::ceil(axis.lo / step - 1e-9), last = std::floor(axis.hi / step + 1e-9);
  if (!(std::abs(first) < 1e12 && std::abs(last) < 1e12 && last - first <= 100)) {
    for (double v : {axis.lo, axis.hi}) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.15g", v);
      axis.ticks.push_back(v);
      axis.labels.push_back(buf);
    }
    return;
  }
  const double largest = std::max(std::abs(first * step), std::abs(last * step));
  for (double k = first; k <= last; ++k) {
    axis.ticks.push_back(k * step);
    axis.labels.push_back(format_tick(k * step, step, largest));
  }
}

// Degenerate spans (one value) get a span around that value.
void widen_if_flat(double& lo, double& hi) {
  if (hi > lo) return;
  const double half = lo != 0 ? std::abs(lo) * 0.1 : 0.5;
  lo -= half;
  hi += half;
}

// Linear axis whose limits are rounded out to whole steps (the y axis of charts), with a little
// room so that lines do not run along the frame; data >= 0 keeps its axis >= 0.
Axis snapped_axis(double lo, double hi, int target) {
  widen_if_flat(lo, hi);
  const double room = 0.03 * (hi - lo);
  lo = lo >= 0 ? std::max(0.0, lo - room) : lo - room;
  hi += room;
  const double step = nice_step(hi - lo, target);
  Axis axis;
  axis.lo = std::floor(lo / step + 1e-9) * step;
  axis.hi = std::ceil(hi / step - 1e-9) * step;
  linear_ticks(axis, step);
  return axis;
}

// Linear axis with the data range padded by `pad` (a share of the span) on both sides; with
// `integral` data (epochs) the step is at least 1.
Axis padded_axis(double lo, double hi, int target, double pad, bool integral) {
  widen_if_flat(lo, hi);
  double step = nice_step(hi - lo, target);
  if (integral) step = std::max(step, 1.0);
  Axis axis;
  axis.lo = lo - pad * (hi - lo);
  axis.hi = hi + pad * (hi - lo);
  linear_ticks(axis, step);
  return axis;
}

std::string format_log_tick(double mantissa, int exponent) {
  char buf[32];
  if (exponent >= -4 && exponent <= 5) {
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -exponent),
                  mantissa * std::pow(10.0, exponent));
  } else {
    std::snprintf(buf, sizeof buf, "%ge%d", mantissa, exponent);  // 1e-5, 2e6
  }
  return buf;
}

// Log axis over positive [lo, hi]: powers of ten when the data spans a few decades, else 1-2-5
// or 1..9 steps within each decade, else (a narrow range) linear nice ticks.
Axis log_axis(double lo, double hi) {
  double llo = std::log10(lo), lhi = std::log10(hi);
  if (lhi - llo < 1e-9) {
    llo -= 0.15;
    lhi += 0.15;
  }
  const double pad = 0.04 * (lhi - llo);
  llo -= pad;
  lhi += pad;
  Axis axis;
  axis.log = true;
  axis.lo = std::pow(10.0, llo);
  axis.hi = std::pow(10.0, lhi);
  const int e0 = int(std::floor(llo)), e1 = int(std::ceil(lhi));
  const int decade_stride = std::max(1, int(std::ceil((lhi - llo) / 8)));
  const std::vector<std::vector<int>> sets = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  for (size_t s = 0; s < sets.size(); ++s) {
    std::vector<double> ticks;
    std::vector<std::string> labels;
    for (int e = e0; e <= e1; ++e) {
      if (s == 0 && (e - e0) % decade_stride != 0) continue;
      for (int m : sets[s]) {
        const double v = m * std::pow(10.0, e);
        if (v < axis.lo * (1 - 1e-9) || v > axis.hi * (1 + 1e-9)) continue;
        ticks.push_back(v);
        labels.push_back(format_log_tick(m, e));
      }
    }
    if (ticks.size() >= 3) {
      axis.ticks = ticks;
      axis.labels = labels;
      if (s == 0 && lhi - llo <= 3.5) {  // more decades: minor lines would hatch the plot
        for (int e = e0; e <= e1; ++e) {
          for (int m = 2; m <= 9; ++m) {
            const double v = m * std::pow(10.0, e);
            if (v > axis.lo && v < axis.hi) axis.minor.push_back(v);
          }
        }
      }
      return axis;
    }
  }
  linear_ticks(axis, nice_step(axis.hi - axis.lo, 4));
  return axis;
}

// A plot area inside a picture, mapping data to pixels.
struct Plot {
  cv::Rect rect;
  Axis x, y;

  cv::Point2d at(double vx, double vy) const {
    return {rect.x + x.frac(vx) * rect.width, rect.y + rect.height - y.frac(vy) * rect.height};
  }
};

// Width the y tick labels need.
int tick_label_width(const Axis& axis) {
  int w = 0;
  for (const auto& label : axis.labels) w = std::max(w, text_size(label, kLabelScale).width);
  return w;
}

// Grid, frame, ticks, tick labels and axis titles. The x title goes at `x_title_y`, the y title
// (turned) centred at `y_title_x`.
void draw_axes(cv::Mat& img, const Plot& plot, const std::string& x_title,
               const std::string& y_title, int x_title_y, int y_title_x) {
  const cv::Rect& r = plot.rect;
  const int left = r.x, right = r.x + r.width, top = r.y, bottom = r.y + r.height;
  for (double v : plot.y.minor) {
    const int py = int(std::lround(plot.at(plot.x.lo, v).y));
    cv::line(img, {left, py}, {right, py}, kMinorGrid, 1);
  }
  for (double v : plot.x.ticks) {
    const int px = int(std::lround(plot.at(v, plot.y.hi).x));
    cv::line(img, {px, top}, {px, bottom}, kGrid, 1);
    cv::line(img, {px, bottom}, {px, bottom + 4}, kFrame, 1);
  }
  for (double v : plot.y.ticks) {
    const int py = int(std::lround(plot.at(plot.x.lo, v).y));
    cv::line(img, {left, py}, {right, py}, kGrid, 1);
    cv::line(img, {left - 4, py}, {left, py}, kFrame, 1);
  }
  cv::rectangle(img, {left, top}, {right, bottom}, kFrame, 1);

  // x tick labels: keep every k-th so that neighbours stay at least 10 px apart.
  const auto& xs = plot.x.ticks;
  size_t stride = 1;
  for (; stride < xs.size(); ++stride) {
    bool fits = true;
    for (size_t i = stride; i < xs.size() && fits; i += stride) {
      const double gap = plot.at(xs[i], 0).x - plot.at(xs[i - stride], 0).x;
      const int need = (text_size(plot.x.labels[i], kLabelScale).width +
                        text_size(plot.x.labels[i - stride], kLabelScale).width) /
                           2 +
                       10;
      fits = gap >= need;
    }
    if (fits) break;
  }
  for (size_t i = 0; i < xs.size(); i += stride) {
    const int px = int(std::lround(plot.at(xs[i], plot.y.lo).x));
    draw_text(img, plot.x.labels[i], {px, bottom + 8}, kLabelScale, kText, HAlign::kCenter,
              VAlign::kTop);
  }
  for (size_t i = 0; i < plot.y.ticks.size(); ++i) {
    const int py = int(std::lround(plot.at(plot.x.lo, plot.y.ticks[i]).y));
    draw_text(img, plot.y.labels[i], {left - 8, py}, kLabelScale, kText, HAlign::kRight,
              VAlign::kMiddle);
  }
  draw_text(img, fit_text(x_title, r.width, kHeadScale, 1, true), {left + r.width / 2, x_title_y},
            kHeadScale, kText, HAlign::kCenter, VAlign::kBaseline);
  draw_text_up(img, fit_text(y_title, r.height, kHeadScale, 1, true),
               {y_title_x, top + r.height / 2}, kHeadScale, kText);
}

void draw_no_data(cv::Mat& img, const cv::Rect& r) {
  draw_text(img, "no data", {r.x + r.width / 2, r.y + r.height / 2}, kHeadScale, kMuted,
            HAlign::kCenter, VAlign::kMiddle);
}

// A white box with a grey border.
void draw_box(cv::Mat& img, const cv::Rect& r) {
  cv::rectangle(img, r, kWhite, cv::FILLED);
  cv::rectangle(img, r, cv::Scalar(190, 190, 190), 1);
}

// ---------------------------------------------------------------------------------------------
// Charts.

constexpr int kMarkersUpTo = 25;  // series with more points are drawn as lines only

// Values beyond kLimit are treated like infinities: spans of them would overflow.
constexpr double kLimit = 1e300;

bool usable(double x, double y, bool log_y) {
  return std::abs(x) <= kLimit && std::abs(y) <= kLimit && (!log_y || y > 0);
}

void draw_chart(cv::Mat& img, const cv::Rect& cell, const Chart& chart) {
  draw_text(img, fit_text(chart.title, cell.width - 20, kChartTitleScale, 1, true),
            {cell.x + cell.width / 2, cell.y + 14}, kChartTitleScale, kText, HAlign::kCenter,
            VAlign::kTop);

  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  bool integral = true;
  for (const auto& s : chart.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i], chart.log_y)) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
      integral = integral && s.x[i] == std::round(s.x[i]);
    }
  }
  const bool empty = !(x0 <= x1);
  Plot plot;
  if (empty) {
    plot.x = padded_axis(0, 1, 5, 0, false);
    plot.y = chart.log_y ? log_axis(0.1, 1) : padded_axis(0, 1, 5, 0, false);
  } else {
    plot.x = padded_axis(x0, x1, 7, 0.03, integral);
    plot.y = chart.log_y ? log_axis(y0, y1) : snapped_axis(y0, y1, 6);
  }
  // Left to right: margin, turned y title, gap, tick labels, gap, plot.
  const int left = cell.x + 12 + 16 + 10 + tick_label_width(plot.y) + 10;
  plot.rect = cv::Rect(left, cell.y + 46, cell.x + cell.width - 22 - left, cell.height - 46 - 56);
  draw_axes(img, plot, chart.x_label, chart.y_label, cell.y + cell.height - 14, cell.x + 20);
  if (empty) {
    draw_no_data(img, plot.rect);
    return;
  }

  // Lines with sub-pixel precision (shift 4: coordinates in 1/16 pixel).
  const auto fixed = [](const cv::Point2d& p) {
    return cv::Point(int(std::lround(p.x * 16)), int(std::lround(p.y * 16)));
  };
  std::vector<cv::Point2d> drawn;  // points and line samples, to place the legend
  std::vector<bool> markers;       // whether a series marks each point
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const auto& s = chart.series[k];
    const cv::Scalar color = palette(k);
    size_t points = 0;
    for (size_t i = 0; i < s.x.size(); ++i) points += usable(s.x[i], s.y[i], chart.log_y);
    markers.push_back(points <= kMarkersUpTo);
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i], chart.log_y)) continue;
      const cv::Point2d p = plot.at(s.x[i], s.y[i]);
      drawn.push_back(p);
      const bool prev = i > 0 && usable(s.x[i - 1], s.y[i - 1], chart.log_y);
      const bool next = i + 1 < s.x.size() && usable(s.x[i + 1], s.y[i + 1], chart.log_y);
      if (next) {
        const cv::Point2d q = plot.at(s.x[i + 1], s.y[i + 1]);
        cv::line(img, fixed(p), fixed(q), color, 2, cv::LINE_AA, 4);
        for (int t = 1; t < 8; ++t) drawn.push_back(p + (q - p) * (t / 8.0));
      }
      if (points <= kMarkersUpTo || (!prev && !next)) {
        cv::circle(img, fixed(p), (!prev && !next ? 4 : 3) * 16, color, cv::FILLED, cv::LINE_AA, 4);
      }
    }
  }

  // Legend in the plot corner that covers the fewest drawn points.
  std::vector<const Series*> listed;
  std::vector<size_t> index;
  std::vector<bool> with_markers;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    if (chart.series[k].label.empty()) continue;
    listed.push_back(&chart.series[k]);
    index.push_back(k);
    with_markers.push_back(markers[k]);
  }
  if (listed.empty()) return;
  const int row = 20, swatch = 24, max_text = plot.rect.width / 2 - swatch - 24;
  int text_w = 0;
  std::vector<std::string> names;
  for (const auto* s : listed) {
    names.push_back(fit_text(s->label, max_text, kLabelScale, 1, true));
    text_w = std::max(text_w, text_size(names.back(), kLabelScale).width);
  }
  const int box_w = 10 + swatch + 8 + text_w + 10, box_h = 8 + int(listed.size()) * row + 4;
  const cv::Rect& r = plot.rect;
  const std::vector<cv::Point> corners = {{r.x + r.width - 8 - box_w, r.y + 8},
                                          {r.x + 8, r.y + 8},
                                          {r.x + r.width - 8 - box_w, r.y + r.height - 8 - box_h},
                                          {r.x + 8, r.y + r.height - 8 - box_h}};
  cv::Rect best;
  size_t best_hidden = SIZE_MAX;
  for (const auto& c : corners) {
    const cv::Rect box(c.x, c.y, box_w, box_h);
    size_t hidden = 0;
    for (const auto& p : drawn) hidden += box.contains(cv::Point(int(p.x), int(p.y)));
    if (hidden < best_hidden) {
      best_hidden = hidden;
      best = box;
    }
  }
  draw_box(img, best);
  for (size_t i = 0; i < listed.size(); ++i) {
    const int cy = best.y + 8 + int(i) * row + row / 2 - 2;
    const cv::Scalar color = palette(index[i]);
    cv::line(img, {best.x + 10, cy}, {best.x + 10 + swatch, cy}, color, 2, cv::LINE_AA);
    if (with_markers[i]) {
      cv::circle(img, {best.x + 10 + swatch / 2, cy}, 3, color, cv::FILLED, cv::LINE_AA);
    }
    draw_text(img, names[i], {best.x + 10 + swatch + 8, cy}, kLabelScale, kText, HAlign::kLeft,
              VAlign::kMiddle);
  }
}

// White -> blue ramp (matplotlib's "Blues") for shares in [0, 1], in BGR.
cv::Scalar blues(double t) {
  static const double stops[5][3] = {
      {247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, int(t));
  const double f = t - i;
  double rgb[3];
  for (int c = 0; c < 3; ++c) rgb[c] = stops[i][c] * (1 - f) + stops[i + 1][c] * f;
  return cv::Scalar(rgb[2], rgb[1], rgb[0]);
}

// Text colour that reads on `background`.
cv::Scalar text_on(const cv::Scalar& background) {
  const double luma = 0.114 * background[0] + 0.587 * background[1] + 0.299 * background[2];
  return luma < 150 ? kWhite : kText;
}

// A percentage with one decimal.
std::string percent(double share) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * share);
  return buf;
}

#endif  // AEFX_HAVE_OPENCV

}  // namespace

bool available() {
#ifdef AEFX_HAVE_OPENCV
  return true;
#else
  return false;
#endif
}

void write_reconstructions(const fs::path& file, const std::vector<Image>& inputs,
                           const std::vector<Image>& outputs,
                           const std::vector<std::string>& captions, const std::string& title,
                           int columns, int scale) {
  check_reconstructions(file, inputs, outputs, captions, columns, scale);
#ifndef AEFX_HAVE_OPENCV
  (void)title;
  no_opencv(file);
#else
  const int n = int(inputs.size());
  const int cols = std::min(columns, n), bands = (n + cols - 1) / cols;
  const int tile_w = inputs[0].width * scale, tile_h = inputs[0].height * scale;
  const int caption_h = captions.empty() ? 0 : kReconCaptionHeight;
  const int band_h = 2 * tile_h + 3 + caption_h;
  const int grid_w = cols * (tile_w + 1) + 1;
  const int width = std::max(kReconMinWidth, kReconLabelWidth + grid_w + kReconMargin);
  const int height =
      kReconTitleHeight + bands * band_h + (bands - 1) * kReconBandGap + kReconMargin;
  cv::Mat3b img(height, width, cv::Vec3b(255, 255, 255));

  draw_text(img, fit_text(title, width - 20, kTitleScale, 2, true), {width / 2, 12}, kTitleScale,
            kText, HAlign::kCenter, VAlign::kTop, 2);
  const auto to_bgr = [&](const Image& image) {
    cv::Mat src(image.height, image.width, CV_8UC(image.channels),
                const_cast<uint8_t*>(image.pixels.data()));
    cv::Mat bgr, big;
    cv::cvtColor(src, bgr, image.channels == 1 ? cv::COLOR_GRAY2BGR : cv::COLOR_RGB2BGR);
    cv::resize(bgr, big, cv::Size(tile_w, tile_h), 0, 0, cv::INTER_NEAREST);
    return big;
  };
  const double label_scale = kLabelScale;
  for (int b = 0; b < bands; ++b) {
    const int top = kReconTitleHeight + b * (band_h + kReconBandGap);
    const int in_y = top + 1, out_y = top + 1 + tile_h + caption_h + 1;
    const int in_cols = std::min(cols, n - b * cols);
    // Grey block behind the band: the gaps between images become 1-pixel lines.
    cv::rectangle(img, cv::Rect(kReconLabelWidth, top, in_cols * (tile_w + 1) + 1, band_h),
                  cv::Scalar(kSeparator), cv::FILLED);
    draw_text(img, "input", {kReconLabelWidth - 10, in_y + tile_h / 2}, label_scale, kText,
              HAlign::kRight, VAlign::kMiddle);
    draw_text(img, fit_text("reconstruction", kReconLabelWidth - 14, label_scale),
              {kReconLabelWidth - 10, out_y + tile_h / 2}, label_scale, kText, HAlign::kRight,
              VAlign::kMiddle);
    for (int c = 0; c < in_cols; ++c) {
      const int i = b * cols + c;
      const int x = kReconLabelWidth + 1 + c * (tile_w + 1);
      to_bgr(inputs[i]).copyTo(img(cv::Rect(x, in_y, tile_w, tile_h)));
      to_bgr(outputs[i]).copyTo(img(cv::Rect(x, out_y, tile_w, tile_h)));
      if (caption_h > 0) {
        const cv::Rect cap(x, in_y + tile_h, tile_w, caption_h);
        cv::rectangle(img, cap, kWhite, cv::FILLED);
        draw_text(img, fit_text(captions[i], tile_w - 4, 0.4), {x + tile_w / 2, cap.y + 9}, 0.4,
                  kText, HAlign::kCenter, VAlign::kMiddle);
      }
    }
  }
  write_png(file, img);
#endif
}

void write_charts(const fs::path& file, const std::vector<Chart>& charts,
                  const std::string& title) {
  check_charts(file, charts);
#ifndef AEFX_HAVE_OPENCV
  (void)title;
  no_opencv(file);
#else
  const int n = int(charts.size());
  const int cols = std::min(2, n), rows = (n + 1) / 2;
  const int width = cols * kChartWidth, height = kChartTitleHeight + rows * kChartHeight;
  cv::Mat3b img(height, width, cv::Vec3b(255, 255, 255));
  draw_text(img, fit_text(title, width - 20, kTitleScale, 2, true), {width / 2, 14}, kTitleScale,
            kText, HAlign::kCenter, VAlign::kTop, 2);
  for (int i = 0; i < n; ++i) {
    const cv::Rect cell((i % 2) * kChartWidth, kChartTitleHeight + (i / 2) * kChartHeight,
                        kChartWidth, kChartHeight);
    draw_chart(img, cell, charts[i]);
  }
  write_png(file, img);
#endif
}

void write_confusion(const fs::path& file, const std::vector<std::vector<int64_t>>& counts,
                     const std::vector<std::string>& class_names, const std::string& title) {
  check_confusion(file, counts, class_names);
#ifndef AEFX_HAVE_OPENCV
  (void)title;
  no_opencv(file);
#else
  const int n = int(class_names.size());
  const int cell = n <= 12 ? kConfusionCell : std::max(24, 720 / n);
  const int width = kConfusionLeft + n * cell + kConfusionRight;
  const int height = kConfusionTop + n * cell + kConfusionBottom;
  cv::Mat3b img(height, width, cv::Vec3b(255, 255, 255));
  const int gx = kConfusionLeft, gy = kConfusionTop;  // the matrix's top-left corner

  int64_t total = 0, correct = 0;
  std::vector<int64_t> row_sum(n, 0);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) row_sum[r] += counts[r][c];
    total += row_sum[r];
    correct += counts[r][r];
  }
  const std::string accuracy =
      total > 0 ? "accuracy " + percent(double(correct) / double(total)) : "no samples";
  const std::string heading = title.empty() ? accuracy : title + " - " + accuracy;
  draw_text(img, fit_text(heading, width - 20, kTitleScale, 2, true), {width / 2, 12}, kTitleScale,
            kText, HAlign::kCenter, VAlign::kTop, 2);
  draw_text(img, fit_text("colour: share of the true class's row", width - 20, 0.4, 1, true),
            {width / 2, 44}, 0.4, kMuted, HAlign::kCenter, VAlign::kTop);

  // Cells: the count in the largest font (down to 0.3) that fits; none if even that does not.
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) {
      const cv::Rect box(gx + c * cell, gy + r * cell, cell, cell);
      const double share = row_sum[r] > 0 ? double(counts[r][c]) / double(row_sum[r]) : 0.0;
      const cv::Scalar fill = blues(share);
      cv::rectangle(img, box, fill, cv::FILLED);
      const std::string text = std::to_string(counts[r][c]);
      double s = r == c ? kLabelScale + 0.05 : kLabelScale;
      while (s > 0.3 && text_size(text, s).width > cell - 6) s -= 0.05;
      if (text_size(text, s).width <= cell - 4) {
        draw_text(img, text, {box.x + cell / 2, box.y + cell / 2}, s, text_on(fill),
                  HAlign::kCenter, VAlign::kMiddle);
      }
    }
  }
  // Thin white lines between cells, a frame around the matrix.
  for (int k = 1; k < n; ++k) {
    cv::line(img, {gx + k * cell, gy}, {gx + k * cell, gy + n * cell - 1}, kWhite, 1);
    cv::line(img, {gx, gy + k * cell}, {gx + n * cell - 1, gy + k * cell}, kWhite, 1);
  }
  cv::rectangle(img, cv::Rect(gx - 1, gy - 1, n * cell + 2, n * cell + 2), kFrame, 1);

  // True classes on the left, predicted classes below (turned when they do not fit the cell).
  const int name_room = kConfusionLeft - 34 - 8;
  for (int r = 0; r < n; ++r) {
    draw_text(img, fit_text(class_names[r], name_room, kLabelScale),
              {gx - 8, gy + r * cell + cell / 2}, kLabelScale, kText, HAlign::kRight,
              VAlign::kMiddle);
  }
  bool flat = true;
  for (const auto& name : class_names)
    flat = flat && text_size(name, kLabelScale).width <= cell - 6;
  const int bottom_room = kConfusionBottom - 40 - 8;
  int names_h = text_size("Ag", kLabelScale).height;  // how far the names reach down
  for (int c = 0; c < n; ++c) {
    const int cx = gx + c * cell + cell / 2;
    if (flat) {
      draw_text(img, class_names[c], {cx, gy + n * cell + 10}, kLabelScale, kText, HAlign::kCenter,
                VAlign::kTop);
    } else {
      const std::string name = fit_text(class_names[c], bottom_room, kLabelScale);
      // Turned names end just under the matrix, so they read upwards from their column.
      draw_text_up(img, name, {cx, gy + n * cell + 8}, kLabelScale, kText, true);
      names_h = std::max(names_h, text_size(name, kLabelScale).width);
    }
  }
  draw_text_up(img, "true class", {18, gy + n * cell / 2}, kHeadScale, kText);
  draw_text(img, "predicted class", {gx + n * cell / 2, gy + n * cell + 10 + names_h + 16},
            kHeadScale, kText, HAlign::kCenter, VAlign::kTop);

  // Per-class accuracy column.
  const int ax = gx + n * cell + 12, aw = kConfusionRight - 12 - 12;
  draw_text(img, "accuracy", {ax + aw / 2, gy - 8}, kLabelScale, kText, HAlign::kCenter,
            VAlign::kBaseline);
  for (int r = 0; r < n; ++r) {
    const cv::Rect box(ax, gy + r * cell, aw, cell);
    if (row_sum[r] == 0) {
      draw_text(img, "-", {box.x + aw / 2, box.y + cell / 2}, kLabelScale, kMuted, HAlign::kCenter,
                VAlign::kMiddle);
      continue;
    }
    const double share = double(counts[r][r]) / double(row_sum[r]);
    // A thin bar under the number shows the accuracy at a glance.
    const int bar_h = std::max(2, cell / 12), bar_y = box.y + cell - bar_h - std::max(2, cell / 6);
    cv::rectangle(img, cv::Rect(box.x, bar_y, aw, bar_h), cv::Scalar(238, 238, 238), cv::FILLED);
    cv::rectangle(img, cv::Rect(box.x, bar_y, int(std::lround(share * aw)), bar_h), blues(0.75),
                  cv::FILLED);
    double s = kLabelScale;
    const std::string text = percent(share);
    while (s > 0.3 && text_size(text, s).width > aw - 4) s -= 0.05;
    if (text_size(text, s).width <= aw - 2) {
      draw_text(img, text, {box.x + aw / 2, bar_y - std::max(4, cell / 6)}, s, kText,
                HAlign::kCenter, VAlign::kBaseline);
    }
  }
  write_png(file, img);
#endif
}

void write_scatter(const fs::path& file, const std::vector<std::array<double, 2>>& points,
                   const std::vector<int64_t>& labels, const std::vector<std::string>& class_names,
                   const std::string& title, const std::string& x_label,
                   const std::string& y_label) {
  check_scatter(file, points, labels, class_names);
#ifndef AEFX_HAVE_OPENCV
  (void)title, (void)x_label, (void)y_label;
  no_opencv(file);
#else
  cv::Mat3b img(kScatterHeight, kScatterWidth, cv::Vec3b(255, 255, 255));
  draw_text(img, fit_text(title, kScatterWidth - 20, kTitleScale, 2, true), {kScatterWidth / 2, 14},
            kTitleScale, kText, HAlign::kCenter, VAlign::kTop, 2);

  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  size_t shown = 0;
  for (const auto& p : points) {
    if (!usable(p[0], p[1], false)) continue;
    ++shown;
    x0 = std::min(x0, p[0]);
    x1 = std::max(x1, p[0]);
    y0 = std::min(y0, p[1]);
    y1 = std::max(y1, p[1]);
  }
  Plot plot;
  if (shown == 0) x0 = y0 = 0, x1 = y1 = 1;
  plot.x = padded_axis(x0, x1, 8, 0.04, false);
  plot.y = padded_axis(y0, y1, 8, 0.04, false);
  const int legend_w = 170;
  const int left = 12 + 16 + 10 + tick_label_width(plot.y) + 10;
  plot.rect = cv::Rect(left, 52, kScatterWidth - legend_w - 20 - left, kScatterHeight - 52 - 60);
  draw_axes(img, plot, x_label, y_label, kScatterHeight - 14, 20);
  if (shown == 0) draw_no_data(img, plot.rect);

  // A fixed pseudo-random drawing order (splitmix64 + Fisher-Yates, the same on every
  // platform): no class is drawn last over all the others.
  std::vector<size_t> order(points.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  uint64_t state = 0x5eed;
  const auto next = [&state] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[next() % i]);
  const double radius = shown > 20000 ? 1.8 : 2.6, alpha = shown > 20000 ? 0.5 : 0.7;
  std::vector<cv::Scalar> colors;
  for (size_t k = 0; k < class_names.size(); ++k) colors.push_back(palette(k));
  const cv::Rect inside(plot.rect.x + 1, plot.rect.y + 1, plot.rect.width - 1,
                        plot.rect.height - 1);
  for (size_t i : order) {
    const auto& p = points[i];
    if (!usable(p[0], p[1], false)) continue;
    const cv::Point2d at = plot.at(p[0], p[1]);
    blend_disc(img, at.x, at.y, radius, colors[size_t(labels[i])], alpha, inside);
  }

  // Legend right of the plot: as many classes as fit, then "+N more".
  const int row = 22, lx = plot.rect.x + plot.rect.width + 16, ly = plot.rect.y;
  const int lw = kScatterWidth - 10 - lx;
  const int fit_rows = (plot.rect.height - 16 - 24) / row;
  const size_t classes = class_names.size();
  const size_t listed = classes <= size_t(fit_rows) ? classes : size_t(std::max(0, fit_rows - 1));
  const int rows = int(listed) + (listed < classes ? 1 : 0);
  draw_box(img, cv::Rect(lx, ly, lw, 12 + rows * row + 24));
  for (size_t k = 0; k < listed; ++k) {
    const int cy = ly + 8 + int(k) * row + row / 2;
    cv::circle(img, {lx + 16, cy}, 6, colors[k], cv::FILLED, cv::LINE_AA);
    draw_text(img, fit_text(class_names[k], lw - 36, kLabelScale), {lx + 30, cy}, kLabelScale,
              kText, HAlign::kLeft, VAlign::kMiddle);
  }
  if (listed < classes) {
    draw_text(img, "+" + std::to_string(classes - listed) + " more",
              {lx + 30, ly + 8 + int(listed) * row + row / 2}, kLabelScale, kMuted, HAlign::kLeft,
              VAlign::kMiddle);
  }
  draw_text(img, std::to_string(shown) + (shown == 1 ? " point" : " points"),
            {lx + 12, ly + 12 + rows * row + 12}, 0.4, kMuted, HAlign::kLeft, VAlign::kMiddle);
  write_png(file, img);
#endif
}

}  // namespace aefx::viz
