#include "aefx/util/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "aefx/util/log.h"

namespace aefx::util {
namespace {

std::atomic<ProgressMode> g_mode{ProgressMode::kAuto};

int terminal_width() {
  winsize ws{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 100;
}

}  // namespace

void set_progress_mode(ProgressMode mode) { g_mode = mode; }

ProgressMode progress_mode() {
  if (log_level() == LogLevel::kQuiet) return ProgressMode::kOff;
  const ProgressMode m = g_mode;
  if (m != ProgressMode::kAuto) return m;
  return ::isatty(STDERR_FILENO) ? ProgressMode::kBar : ProgressMode::kLines;
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  if (s < 60) return strfmt("%llds", s);
  if (s < 3600) return strfmt("%lld:%02lld", s / 60, s % 60);
  return strfmt("%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
}

std::string format_progress(const ProgressInfo& p, int width) {
  const double frac =
      p.steps > 0 ? std::clamp(static_cast<double>(p.step) / static_cast<double>(p.steps), 0.0, 1.0)
                  : 0.0;
  const std::string head =
      p.epochs > 0 ? strfmt("%s %lld/%lld", p.stage.c_str(), static_cast<long long>(p.epoch),
                            static_cast<long long>(p.epochs))
                   : p.stage;
  const std::string loss = p.show_loss ? strfmt("  loss %.4g  lr %.1e", p.loss, p.lr) : "";
  const std::string tail = strfmt("%3.0f%% %.0f img/s%s  ETA %s", 100.0 * frac, p.images_per_second,
                                  loss.c_str(), format_duration(p.eta_seconds).c_str());
  const int bar = width - static_cast<int>(head.size() + tail.size()) - 4;
  if (bar < 5) return (head + " " + tail).substr(0, static_cast<size_t>(std::max(0, width)));
  const int filled = static_cast<int>(std::floor(frac * bar));
  return head + " [" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(bar - filled), '-') + "] " + tail;
}

ProgressDisplay::ProgressDisplay(ProgressMode mode, double bar_interval, double line_interval)
    : mode_(mode == ProgressMode::kAuto ? progress_mode() : mode),
      bar_interval_(bar_interval),
      line_interval_(line_interval) {}

ProgressDisplay::~ProgressDisplay() { clear(); }

bool ProgressDisplay::due(double now) const {
  switch (mode_) {
    case ProgressMode::kBar:
      return now - last_ >= bar_interval_;
    case ProgressMode::kLines:
      return now - last_ >= line_interval_;
    default:
      return false;
  }
}

void ProgressDisplay::update(const ProgressInfo& p, double now) {
  if (!due(now)) return;
  if (mode_ == ProgressMode::kBar) {
    set_status_line(format_progress(p, terminal_width() - 1));
    last_ = now;
  } else if (mode_ == ProgressMode::kLines) {
    // The first call only starts the clock: a line after line_interval, not at step 1.
    if (last_ > -1e299 && p.step < p.steps) log_info(format_progress(p, 100));
    last_ = now;
  }
}

void ProgressDisplay::clear() {
  if (mode_ == ProgressMode::kBar) set_status_line("");
}

}  // namespace aefx::util
