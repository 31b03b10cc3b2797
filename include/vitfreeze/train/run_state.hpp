#pragma once
// The trainer's part of a checkpoint, beside the parameters and optimiser state (io/checkpoint.hpp):
// the controller's state, the run's position (next iteration, its epoch and batch in the loader's
// order, skipped steps) and its history (the finished epochs' reports and the sums of the current
// epoch, so a resumed run reports the whole run). Reading checks everything against the run before
// anything is restored: position, frozen prefix (as the schedule has it at the stored step), history.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/io/checkpoint.hpp"
#include "vitfreeze/train/records.hpp"

namespace vitfreeze::train {

// Where a run is: what a checkpoint carries beside the model, optimiser and controller.
struct RunPosition {
  std::int64_t next_iteration = 0;
  std::int64_t skipped_steps = 0;
  std::vector<EpochReport> history;  // the finished epochs
  EpochProgress progress;            // the epoch in progress
};

inline constexpr std::int64_t kHistoryColumns = 5;   // epoch, mean loss, seconds, images/s, first active unit
inline constexpr std::int64_t kProgressColumns = 4;  // loss sum, losses, images, seconds

inline void add_run_state(io::SafetensorsWriter& w, const freeze::FreezeController& controller, const RunPosition& at) {
  const auto state = controller.state();
  Tensor<std::uint8_t> frozen(Shape{std::int64_t(state.frozen.size())});
  for (std::size_t u = 0; u < state.frozen.size(); ++u) frozen[std::int64_t(u)] = state.frozen[u] ? 1 : 0;
  w.add("freeze/frozen", frozen);
  io::add_i64(w, "freeze/last_step", state.last_step);
  const std::int64_t iters = controller.run().iters_per_epoch;
  io::add_i64(w, "train/iteration", at.next_iteration);
  io::add_i64(w, "train/epoch", at.next_iteration / iters);
  io::add_i64(w, "train/batch", at.next_iteration % iters);
  io::add_i64(w, "train/skipped_steps", at.skipped_steps);
  Tensor<double> history(Shape{std::int64_t(at.history.size()), kHistoryColumns});
  for (std::size_t e = 0; e < at.history.size(); ++e) {
    const auto& h = at.history[e];
    const double row[kHistoryColumns] = {double(h.epoch), h.mean_loss, h.seconds, h.images_per_second,
                                         double(h.first_active_unit)};
    std::copy(row, row + kHistoryColumns, history.data() + e * kHistoryColumns);
  }
  w.add("train/history", history);
  const double progress[kProgressColumns] = {at.progress.loss_sum, double(at.progress.losses), double(at.progress.images),
                                             at.progress.seconds};
  Tensor<double> epoch_progress(Shape{kProgressColumns});
  std::copy(progress, progress + kProgressColumns, epoch_progress.data());
  w.add("train/epoch_progress", epoch_progress);
}

// The stored position must be one this trainer can reach: next iteration within the run, at a
// window boundary, (epoch, batch) its position in the loader's order, the controller's last step
// the first micro-batch of the last window (or of the next one: the state a stop saved before
// it), no more skips than windows, and exactly the units frozen that the schedule freezes by then.
inline void check_position(const io::SafetensorsReader& r, const freeze::FreezeController& controller, int accumulation,
                           const freeze::FreezeController::State& state, std::int64_t next, std::int64_t skipped,
                           std::vector<std::string>& problems) {
  const std::int64_t iters = controller.run().iters_per_epoch, total = controller.run().total_iterations();
  const int A = accumulation;
  const std::int64_t epoch = io::get_i64(r, "train/epoch"), batch = io::get_i64(r, "train/batch");
  const std::string where = "(iteration " + std::to_string(next) + ", epoch " + std::to_string(epoch) + ", batch " +
                            std::to_string(batch) + ", last step " + std::to_string(state.last_step) + "; " +
                            std::to_string(iters) + " iterations per epoch, accumulation " + std::to_string(A) + ")";
  if (next < 0 || next > total || next % A != 0) {
    problems.push_back("train/iteration: outside the run [0, " + std::to_string(total) + "] or not at the start of an "
                       "accumulation window " + where);
    return;
  }
  if (epoch != next / iters || batch != next % iters)
    problems.push_back("train/epoch, train/batch: not the position of the iteration " + where);
  // At an epoch's end the last window may lie earlier in that epoch (epochs cut short, a loader
  // that ran out of batches).
  const std::int64_t earliest = next % iters == 0 && next > 0 ? next - iters : next - A;
  const bool last_window = state.last_step >= earliest && state.last_step <= next - A &&
                           (state.last_step - earliest) % A == 0;
  if (!(next == 0 && state.last_step == -1) && !last_window && state.last_step != next)
    problems.push_back("freeze/last_step: not the first micro-batch of the last (or the next) window " + where);
  if (state.last_step >= total)
    problems.push_back("freeze/last_step: outside the run " + where);
  if (skipped < 0 || skipped > next / A + 1)
    problems.push_back("train/skipped_steps: " + std::to_string(skipped) + " outside [0, windows run] " + where);
  int frozen = 0;
  while (frozen < controller.units() && state.frozen[std::size_t(frozen)]) ++frozen;
  for (int u = frozen; u < controller.units(); ++u)
    if (state.frozen[std::size_t(u)]) {
      problems.push_back("freeze/frozen: frozen units are not a prefix");
      return;
    }
  if (state.last_step < total && frozen != controller.frozen_units_at(state.last_step))
    problems.push_back("freeze/frozen: " + std::to_string(frozen) + " units frozen, the schedule has " +
                       std::to_string(controller.frozen_units_at(state.last_step)) + " frozen by the last step " + where);
}

// The history the checkpoint carries; none in files written before it was recorded (the reports
// then start at the resume). Checked: epochs increasing and finished, values finite and in range.
inline std::pair<std::vector<EpochReport>, EpochProgress> read_history(const io::SafetensorsReader& r,
                                                                       const freeze::FreezeController& controller,
                                                                       std::int64_t next, std::vector<std::string>& problems) {
  std::vector<EpochReport> history;
  EpochProgress progress;
  if (!r.has("train/history") && !r.has("train/epoch_progress")) return {history, progress};
  const std::int64_t iters = controller.run().iters_per_epoch, finished = next / iters;
  const std::size_t before = problems.size();
  io::expect_tensor(r, "train/epoch_progress", DType::f64, {kProgressColumns}, problems);
  if (!r.has("train/history") || r.info("train/history").dtype != DType::f64 || r.info("train/history").shape.size() != 2 ||
      r.info("train/history").shape[1] != kHistoryColumns || r.info("train/history").shape[0] > finished)
    problems.push_back("train/history: expected F64 [at most " + std::to_string(finished) + " finished epochs, " +
                       std::to_string(kHistoryColumns) + "]");
  if (problems.size() != before) return {history, progress};
  const auto h = r.get<double>("train/history");
  const auto p = r.get<double>("train/epoch_progress");
  for (std::int64_t e = 0; e < h.dim(0); ++e) {
    const double* row = h.data() + e * kHistoryColumns;
    const bool valid = std::all_of(row, row + kHistoryColumns, [](double v) { return std::isfinite(v) && v >= 0; }) &&
                       row[0] == std::floor(row[0]) && row[0] < double(finished) &&
                       (e == 0 || row[0] > double(history.back().epoch)) && row[4] == std::floor(row[4]) &&
                       row[4] <= double(controller.units());
    if (!valid) {
      problems.push_back("train/history: row " + std::to_string(e) + " is not a finished epoch's report");
      return {{}, {}};
    }
    history.push_back({int(row[0]), row[1], row[2], row[3], int(row[4])});
  }
  // Checked before the counts become integers: a double outside int64's range does not convert.
  const bool counts_whole = p[1] == std::floor(p[1]) && p[2] == std::floor(p[2]);
  if (!std::isfinite(p[0]) || !(p[1] >= 0 && p[1] <= double(next % iters)) || !(p[2] >= 0 && p[2] < 9e15) ||
      !(p[3] >= 0 && std::isfinite(p[3])) || !counts_whole) {
    problems.push_back("train/epoch_progress: not the sums of the " + std::to_string(next % iters) +
                       " micro-batches run in the current epoch");
    return {{}, {}};
  }
  progress = {p[0], std::int64_t(p[1]), std::int64_t(p[2]), p[3]};
  return {history, progress};
}

// The controller state and position a checkpoint holds, every problem appended to `problems`
// (nothing is changed here: the trainer restores only a state read without problems).
struct StoredRunState {
  freeze::FreezeController::State controller;
  RunPosition position;
};
inline StoredRunState read_run_state(const io::SafetensorsReader& r, const freeze::FreezeController& controller,
                                     int accumulation, std::vector<std::string>& problems) {
  StoredRunState s;
  const int units = controller.units();
  io::expect_tensor(r, "freeze/frozen", DType::u8, {units}, problems);
  for (const char* name : {"freeze/last_step", "train/iteration", "train/epoch", "train/batch", "train/skipped_steps"})
    io::expect_tensor(r, name, DType::i64, {}, problems);
  io::throw_if_problems(r, problems, "checkpoint state does not fit this trainer");
  const auto frozen = r.get<std::uint8_t>("freeze/frozen");
  for (int u = 0; u < units; ++u) s.controller.frozen.push_back(frozen[u] != 0);
  s.controller.last_step = io::get_i64(r, "freeze/last_step");
  s.position.next_iteration = io::get_i64(r, "train/iteration");
  s.position.skipped_steps = io::get_i64(r, "train/skipped_steps");
  check_position(r, controller, accumulation, s.controller, s.position.next_iteration, s.position.skipped_steps, problems);
  for (int u = 0; u < units; ++u)
    if (frozen[u] > 1)
      problems.push_back("freeze/frozen: unit " + std::to_string(u) + " holds " + std::to_string(frozen[u]) + ", not 0 or 1");
  auto [history, progress] = read_history(r, controller, s.position.next_iteration, problems);
  s.position.history = std::move(history);
  s.position.progress = progress;
  return s;
}

}  // namespace vitfreeze::train
