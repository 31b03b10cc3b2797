#pragma once
// A tiny "model" for the checkpoint fuzz target and its seeds: three parameters (one with a
// weight-file shape that differs from its value shape, one frozen), an AdamW with state for one of
// them, and a fixed architecture/recipe. load() is the loader's sequence as a trainer runs it:
// open (integrity + configuration), check every tensor, only then restore, then read the scalars.
#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "vitfreeze/io/checkpoint.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace vitfreeze::fuzz {

struct CheckpointFixture {
  io::Json architecture = io::Json::parse(R"({"model":"fuzz","dim":4,"depth":1})");
  io::Json recipe = io::Json::parse(R"({"lr":0.001,"schedule":[1,2,3]})");
  std::array<Parameter<float>, 3> storage{Parameter<float>("patch.weight", Shape{2, 6}, true),
                                          Parameter<float>("w", Shape{3, 2}, true),
                                          Parameter<float>("b", Shape{2}, false)};
  std::vector<Parameter<float>*> params{&storage[0], &storage[1], &storage[2]};
  optim::AdamW<float> optimizer;
  static constexpr const char* kScalars[] = {"train/iteration", "train/epoch", "train/batch", "train/skipped_steps"};

  CheckpointFixture() { storage[0].file_shape = Shape{2, 1, 2, 3}; }

  static bool frozen(const Parameter<float>& p) { return p.name == "b"; }

  // A valid checkpoint's contents (the caller decides about checksums).
  io::SafetensorsWriter writer() {
    for (auto* p : params)
      for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] = 0.25f * float(i);
    auto& s = optimizer.mutable_state(storage[1]);
    s.m = Tensor<float>::full(storage[1].value.shape(), 0.5f);
    s.v = Tensor<float>::full(storage[1].value.shape(), 0.125f);
    s.step = 3;
    io::SafetensorsWriter w;
    io::add_checkpoint_config(w, architecture, recipe);
    io::add_parameters(w, params, "param/");
    io::add_optimizer_state(w, optimizer, params);
    std::int64_t value = 7;
    for (const char* name : kScalars) io::add_i64(w, name, value++);
    return w;
  }

  void load(const std::filesystem::path& path) {
    const io::SafetensorsReader r = io::open_checkpoint(path, architecture, recipe);
    std::vector<std::string> problems;
    io::check_parameters(r, params, frozen, problems);
    io::throw_if_problems(r, problems, "checkpoint does not fit the fuzz model");
    io::restore_parameters(r, params, optimizer);
    for (const char* name : kScalars) {
      try {
        (void)io::get_i64(r, name);
      } catch (const Error&) {
      }
    }
  }
};

}  // namespace vitfreeze::fuzz
