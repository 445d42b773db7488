#pragma once
// Progress of a training stage: on a terminal one line redrawn in place (stage, epoch n/N, a
// bar, images/s, running loss, LR, ETA of the stage); otherwise (CI, pipes, log files) a plain
// line every so often. The redrawn line lives in the log's status line (util/log.h), so log
// lines printed meanwhile never collide with it.
#include <cstdint>
#include <string>

namespace aefx::util {

/// How progress is shown. kAuto: kBar when stderr is a terminal, else kLines.
enum class ProgressMode { kAuto, kBar, kLines, kOff };

/// Process-wide choice (the CLI sets it from --quiet / --progress).
void set_progress_mode(ProgressMode mode);
/// The mode in force, kAuto resolved (kOff when the log level is quiet).
ProgressMode progress_mode();

/// What one progress line shows.
struct ProgressInfo {
  std::string stage;
  int64_t epoch = 0, epochs = 0;  ///< 1-based epoch of epochs
  int64_t step = 0, steps = 0;    ///< steps done in the epoch, of steps
  double images_per_second = 0;
  double loss = 0;  ///< running mean loss of the epoch
  double lr = 0;
  double eta_seconds = -1;  ///< time left for the stage; < 0 unknown
  bool show_loss = true;    ///< false: no loss and lr (work that does not train)
};

/// "1:02:03", "12:34" or "45s"; "?" for a negative duration.
std::string format_duration(double seconds);

/// The progress line, at most `width` columns (the bar takes what is left; dropped when the
/// width is too small), e.g.
/// "pretrain 3/30 [######------]  52% 1840 img/s  loss 0.2154  lr 1.9e-03  ETA 8:12"; with
/// epochs 0 the stage's name stands alone ("extract [###---]  50% 2100 img/s  ETA 12s").
std::string format_progress(const ProgressInfo& p, int width);

/// Shows the progress of one loop. Bar mode redraws at most every `bar_interval` seconds; lines
/// mode prints a line at most every `line_interval` seconds (and not for the last step of an
/// epoch, which the stage's summary line reports).
class ProgressDisplay {
 public:
  explicit ProgressDisplay(ProgressMode mode = progress_mode(), double bar_interval = 0.1,
                           double line_interval = 15.0);
  ~ProgressDisplay();  ///< clears the bar
  /// True when update() would show something now (callers skip computing `p` otherwise).
  bool due(double now) const;
  void update(const ProgressInfo& p, double now);
  /// Removes the redrawn line (before a summary line, at the end).
  void clear();
  ProgressMode mode() const { return mode_; }

 private:
  ProgressMode mode_;
  double bar_interval_, line_interval_;
  double last_ = -1e300;
};

}  // namespace aefx::util
