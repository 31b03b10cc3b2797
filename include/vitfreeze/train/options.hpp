#pragma once
// What a pretraining run is told beyond its models, schedule and optimiser.
#include <cstdint>
#include <filesystem>

#include "vitfreeze/dist/communicator.hpp"
#include "vitfreeze/freeze/semantics.hpp"
#include "vitfreeze/io/json.hpp"

namespace vitfreeze::train {

enum class NonFinitePolicy { stop, skip };

struct PretrainOptions {
  int epochs = 10;  // LRs, warmup and freeze points come from the FreezeController
  std::uint64_t seed = 0;
  freeze::FreezeSemantics semantics = freeze::FreezeSemantics::truncate;
  NonFinitePolicy non_finite = NonFinitePolicy::stop;
  int max_skipped_steps = 10;
  std::int64_t log_every = 50;           // steps between metrics records
  std::int64_t max_steps_per_epoch = -1; // for smoke runs: cut every epoch short
  std::filesystem::path out_dir;         // metrics.jsonl goes here when set
  bool progress = true;
  // Gradient accumulation: micro-batches per optimiser step. g counts micro-batches (as ViTFreeze's
  // iteration counter does); LRs and freezing advance on the first micro-batch of each window, the
  // update happens after the last, and each micro-batch's loss is weighted 1/accumulation. Masks
  // are keyed by (window, sample offset in the window), so A micro-batches of B equal one batch of
  // A*B. The iterations per epoch (and checkpoint_every_steps) must be multiples of it.
  int accumulation = 1;
  // Keep the patch embedding (and cls token) training to the end: blocks are then units 0..depth-1
  // (ViTFreeze's --dont_freeze_pe). Activation gradients must reach the patch embedding through the
  // frozen blocks, so only their weight gradients are saved, whatever `semantics` says.
  bool dont_freeze_pe = false;

  // Checkpoints: written to checkpoint_dir (when set) every `checkpoint_every_epochs` epochs and at
  // the end (0: never), every `checkpoint_every_steps` steps (0: never), and before a NumericError
  // is thrown (the last good state). Only the newest `keep_checkpoints` are kept.
  std::filesystem::path checkpoint_dir;
  int checkpoint_every_epochs = 1;
  std::int64_t checkpoint_every_steps = 0;
  int keep_checkpoints = 2;
  // The caller's part of the recipe (batch size, data, augmentation, ...): stored in checkpoints and
  // compared on resume together with what the trainer knows (schedule, LRs, seed, optimiser).
  io::Json recipe = io::Json::object();

  // Writes one step's input, mask, loss, parameters and gradients to this file (train/step_dump.hpp).
  std::filesystem::path dump_step;
  std::int64_t dump_iteration = -1;  // which iteration; -1: the first step this trainer runs

  // Data parallel training: the group of ranks this trainer is one of (nullptr: a single process).
  // Every rank constructs its trainer with the same options and feeds it its own shard (a Loader
  // with this rank and world). Only rank 0 writes checkpoints, metrics and the progress bar; every
  // rank reads checkpoints (a file system all ranks see). Must outlive the trainer.
  dist::Communicator* communicator = nullptr;
};

}  // namespace vitfreeze::train
