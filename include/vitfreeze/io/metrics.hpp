#pragma once
// Training telemetry: MetricsLog appends one JSON object per line to metrics.jsonl (flushed per
// record, so a crash loses at most the line being written, and opened in append mode so a resumed
// run continues the same file); read_metrics reads it back for plots and resume. ProgressBar
// prints epoch, step/total, mean loss, images/s and ETA: redrawn in place with '\r' on a terminal,
// as plain periodic lines otherwise (CI logs, files).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/io/atomic_file.hpp"
#include "vitfreeze/io/json.hpp"

namespace vitfreeze::io {

class MetricsLog {
 public:
  enum class Mode { append, truncate };

  explicit MetricsLog(const std::filesystem::path& path, Mode mode = Mode::append) : path_(path.string()) {
    out_.open(path, std::ios::binary | (mode == Mode::append ? std::ios::app : std::ios::trunc));
    if (!out_) throw FileError(path_, 0, "cannot open the metrics log for writing");
  }

  // Appends `record` (a JSON object) as one line and flushes it.
  void log(const Json& record) {
    if (!record.is_object()) throw ConfigError("MetricsLog: a record must be a JSON object, got " + record.dump());
    out_ << record.dump() << '\n';
    out_.flush();
    if (!out_) throw FileError(path_, 0, "writing a metrics record failed (disk full?)");
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// All records of a metrics.jsonl. A last line without its newline is the trace of a crash in
// mid-write and is ignored; any other malformed line is a DataError naming its byte offset.
inline std::vector<Json> read_metrics(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  std::vector<Json> records;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) break;  // torn final line
    const std::string_view line(text.data() + pos, nl - pos);
    if (!line.empty()) {
      try {
        Json j = Json::parse(line, path.string());
        if (!j.is_object()) throw DataError(path.string(), pos, "metrics: expected a JSON object per line");
        records.push_back(std::move(j));
      } catch (const JsonParseError& e) {
        throw DataError(path.string(), pos + e.offset(), std::string("metrics: ") + e.what());
      }
    }
    pos = nl + 1;
  }
  return records;
}

struct ProgressOptions {
  // Redraw in place? Default: yes when the stream is std::cout/cerr/clog on a terminal.
  std::optional<bool> interactive{};
  double redraw_interval_s = 0.1;  // terminal: at most this often
  double line_interval_s = 30.0;   // non-terminal: one line this often (and at each epoch end)
  int bar_width = 24;
  std::string label = "epoch";  // what the line counts: "epoch 2/4", "probe epoch 3/10", "features 1/1"
  bool show_loss = true;        // false: a phase without a loss (feature extraction)
  bool show_epochs = true;      // false: a one-pass phase, no "1/1" after the label
  // Seconds on a monotonic clock; replaceable for tests.
  std::function<double()> clock = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
};

class ProgressBar {
 public:
  explicit ProgressBar(std::ostream& out, ProgressOptions options = {}) : out_(out), opt_(std::move(options)) {
    interactive_ = opt_.interactive ? *opt_.interactive : stream_is_terminal(out);
  }

  // `epoch` counts from 1 to `epochs`.
  void begin_epoch(int epoch, int epochs, std::int64_t steps) {
    epoch_ = epoch, epochs_ = epochs, steps_ = steps;
    step_ = 0, images_ = 0, loss_sum_ = 0, losses_ = 0;
    start_ = last_draw_ = opt_.clock();
    drawn_width_ = 0;
    drawn_step_ = -1;
  }

  // After step `step` (1-based) which processed `images` images with loss `loss`.
  void update(std::int64_t step, double loss, std::int64_t images) {
    step_ = step;
    images_ += images;
    loss_sum_ += loss;
    ++losses_;
    const double now = opt_.clock();
    const double interval = interactive_ ? opt_.redraw_interval_s : opt_.line_interval_s;
    if (now - last_draw_ >= interval) {
      draw(now, false);
      last_draw_ = now;
    }
  }

  // Final state of the epoch, ending the line (in logs, unless that state is already printed).
  void end_epoch() {
    if (!interactive_ && drawn_step_ == step_) return;
    draw(opt_.clock(), true);
  }

  bool interactive() const { return interactive_; }

  // The status line as it would be printed now.
  std::string line() const { return render(opt_.clock()); }

  static std::string format_duration(double seconds) {
    if (!(seconds >= 0) || seconds > 1e8) return "--:--";
    const auto s = static_cast<long long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
    return buf;
  }

 private:
  std::ostream& out_;
  ProgressOptions opt_;
  bool interactive_ = false;
  int epoch_ = 0, epochs_ = 0;
  std::int64_t steps_ = 0, step_ = 0, images_ = 0, losses_ = 0;
  double loss_sum_ = 0, start_ = 0, last_draw_ = 0;
  std::size_t drawn_width_ = 0;
  std::int64_t drawn_step_ = -1;

  static bool stream_is_terminal(const std::ostream& out) {
    if (&out == &std::cout) return ::isatty(STDOUT_FILENO) == 1;
    if (&out == &std::cerr || &out == &std::clog) return ::isatty(STDERR_FILENO) == 1;
    return false;
  }

  std::string render(double now) const {
    const double elapsed = now - start_;
    std::string s = opt_.label + " ";
    if (opt_.show_epochs) s += std::to_string(epoch_) + "/" + std::to_string(epochs_) + " ";
    if (interactive_ && steps_ > 0) {
      const auto filled = static_cast<int>(opt_.bar_width * std::min<std::int64_t>(step_, steps_) / steps_);
      s += "[" + std::string(static_cast<std::size_t>(filled), '#') +
           std::string(static_cast<std::size_t>(opt_.bar_width - filled), '.') + "] ";
    }
    char buf[160];
    const double rate = elapsed > 0 ? static_cast<double>(images_) / elapsed : 0;
    std::snprintf(buf, sizeof buf, "%lld/%lld", static_cast<long long>(step_), static_cast<long long>(steps_));
    s += buf;
    if (opt_.show_loss) {
      std::snprintf(buf, sizeof buf, "  loss %.4f", losses_ ? loss_sum_ / static_cast<double>(losses_) : 0.0);
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "  %.1f img/s", rate);
    s += buf;
    if (step_ > 0) {
      // Remaining time at this epoch's mean step time; the run estimate assumes equal epochs.
      const double per_step = elapsed / static_cast<double>(step_);
      const double epoch_left = per_step * static_cast<double>(steps_ - step_);
      s += "  eta " + format_duration(epoch_left);
      if (epochs_ > epoch_)
        s += " (run " + format_duration(epoch_left + per_step * static_cast<double>(steps_) * (epochs_ - epoch_)) + ")";
    }
    return s;
  }

  void draw(double now, bool final_line) {
    std::string s = render(now);
    drawn_step_ = step_;
    if (interactive_) {
      const std::size_t width = s.size();
      if (s.size() < drawn_width_) s.append(drawn_width_ - s.size(), ' ');  // erase the longer previous line
      out_ << '\r' << s;
      drawn_width_ = width;
      if (final_line) out_ << '\n';
    } else {
      out_ << s << '\n';
    }
    out_.flush();
  }
};

}  // namespace vitfreeze::io
