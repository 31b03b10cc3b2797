#pragma once
// What a pretraining run reports: per epoch (the returned reports, carried across resumes by the
// checkpoints) and as metrics.jsonl records (step, epoch, freeze), the same on every backend.
#include <cstdint>

#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/io/json.hpp"

namespace vitfreeze::train {

struct EpochReport {
  int epoch = 0;
  double mean_loss = 0;  // over the micro-batches with a finite loss
  double seconds = 0;
  double images_per_second = 0;
  int first_active_unit = 0;
};

// The epoch in progress: what its report will be made of.
struct EpochProgress {
  double loss_sum = 0;     // finite losses only
  std::int64_t losses = 0;  // micro-batches in loss_sum
  std::int64_t images = 0;  // all ranks'
  double seconds = 0;
};

// The metrics.jsonl records of a pretraining run (the GPU trainer writes the same ones).
inline io::Json step_record(int epoch, std::int64_t g, double loss, const freeze::FreezeController& controller) {
  io::Json rec = io::Json::object();
  rec["kind"] = "step";
  rec["epoch"] = epoch;
  rec["iteration"] = g;
  rec["loss"] = loss;
  rec["lr"] = controller.lr(controller.units() - 1);
  rec["first_active_unit"] = controller.first_active_unit();
  return rec;
}
inline io::Json epoch_record(const EpochReport& r) {
  io::Json rec = io::Json::object();
  rec["kind"] = "epoch";
  rec["epoch"] = r.epoch;
  rec["loss"] = r.mean_loss;
  rec["seconds"] = r.seconds;
  rec["images_per_second"] = r.images_per_second;
  rec["first_active_unit"] = r.first_active_unit;
  return rec;
}
inline io::Json freeze_record(int unit, std::int64_t iteration) {
  io::Json rec = io::Json::object();
  rec["kind"] = "freeze";
  rec["unit"] = unit;
  rec["iteration"] = iteration;
  return rec;
}

}  // namespace vitfreeze::train
