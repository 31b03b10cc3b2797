#pragma once
// The step dump (`--dump-step PATH`, PretrainOptions::dump_step): one training step written so that
// an outside checker (PyTorch) can rebuild the model and the step from the file alone.
//
//   input          [B, C, H, W] F32, after normalisation
//   mask           [B, L] U8, 1 = removed, patch order
//   loss           F32 scalar
//   param/<name>   every trained parameter before the update, PyTorch's name in PyTorch's layout
//   grad/<name>    the gradient of every parameter that has one (frozen ones have none), same layout
// Metadata (JSON strings):
//   vitfreeze.contents  "step-dump"
//   vitfreeze.objective the objective's name
//   vitfreeze.spec      the encoder (image, channels, patch, dim, depth, heads, mlp_ratio)
//   vitfreeze.objective_spec  decoder (dim, depth, heads, mlp_ratio), taps (block, scale, HOG pool,
//                       active), target (its kind and settings: norm_pix, HOG bins, contrastive kappa/tau)
//   vitfreeze.masking   policy, ratio, visible patches per sequence, views (windows: side, count, pairing;
//                       `mask` is then [images x windows, cells])
//   vitfreeze.iteration, vitfreeze.recipe (the trainer's recipe: LRs, schedule, semantics, seed, ...)
// "PyTorch's layout" is io/torch_layout.hpp's: a transposed convolution's kernel is [in, out, 2, 2].
#include <cstdint>
#include <filesystem>
#include <string>

#include "vitfreeze/io/json.hpp"
#include "vitfreeze/io/safetensors.hpp"
#include "vitfreeze/io/torch_layout.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/mim/mae_decoder.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/norm_pix.hpp"
#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::train {

inline io::Json decoder_json(const mim::DecoderSpec& d) {
  io::Json j = io::Json::object();
  j.set("dim", d.dim);
  j.set("depth", d.depth);
  j.set("heads", d.heads);
  j.set("mlp_ratio", d.mlp_ratio);
  return j;
}

// A reconstruction target's settings, from the members it has (a user's target: its name).
template <class Target>
io::Json target_json() {
  io::Json target = io::Json::object();
  target.set("kind", Target::name);
  if constexpr (requires { Target::bins; }) target.set("bins", Target::bins);
  if constexpr (requires { Target::normalized; }) {
    target.set("patch_order", "pixel_major (u, v, c)");
    target.set("norm_pix", Target::normalized);
    if (Target::normalized) {
      target.set("norm_pix_eps", mim::kNormPixEps);
      target.set("norm_pix_variance", "unbiased");
    }
  }
  return target;
}

// What the objective is beyond its name: its decoder, taps and target, from the members it has.
template <class Objective>
io::Json objective_spec_json(const Objective& objective) {
  io::Json j = io::Json::object();
  j.set("name", Objective::name);
  if constexpr (requires { Objective::decoder_spec; }) j.set("decoder", decoder_json(Objective::decoder_spec));
  io::Json target = io::Json::object();
  if constexpr (requires { typename Objective::TargetType; }) target = target_json<typename Objective::TargetType>();
  if constexpr (requires { Objective::tap_specs; }) {  // LocalMIM: the target at each tap's scale
    io::Json taps = io::Json::array();
    for (int k = 0; k < int(Objective::tap_specs.size()); ++k) {
      const auto& t = Objective::tap_specs[std::size_t(k)];
      io::Json tap = io::Json::object();
      tap.set("block", t.block);
      tap.set("scale_num", t.scale_num);
      tap.set("scale_den", t.scale_den);
      tap.set("cell", Objective::cell(k));
      tap.set("values_per_cell", Objective::out_dim(k));
      tap.set("active", objective.tap_active(k));
      taps.push_back(std::move(tap));
    }
    j.set("taps", std::move(taps));
  } else if constexpr (requires { Objective::out_dim; }) {  // MAE family: the target of the removed patches
    target.set("values_per_cell", Objective::out_dim);
  } else if constexpr (requires { Objective::loss_options.tau; }) {  // MiCL: no target, two views
    target.set("kind", "contrastive");
    target.set("kappa", Objective::loss_options.kappa);
    target.set("tau", Objective::loss_options.tau);
    target.set("views", Objective::views);
  }
  j.set("target", std::move(target));
  return j;
}

template <class Masking>
io::Json masking_json(const Masking& masking, int grid) {
  io::Json j = io::Json::object();
  if constexpr (requires { Masking::name; }) j.set("policy", Masking::name);
  j.set("ratio", masking.ratio_per_mille / 1000.0);
  j.set("visible_patches", masking.kept(grid, grid));
  if constexpr (requires { masking.views; }) j.set("views", int(masking.views));
  else j.set("views", 1);
  if constexpr (requires { Masking::min_block; }) j.set("min_block", Masking::min_block);
  if constexpr (requires { masking.windows; masking.window; masking.pairing; }) {  // LoMaR: positions are window cells
    j.set("window", int(masking.window));
    j.set("windows", int(masking.windows));
    j.set("pairing", masking.pairing == mim::WindowPairing::distinct ? "distinct" : "lomar_code");
  }
  return j;
}

// Writes the dump described at the top of this file.
template <ViTSpec S, class Objective, class Masking, CpuScalar T>
void write_step_dump(const std::filesystem::path& file, const Objective& objective, const Masking& masking,
                     const nn::ParameterList<T>& params, const Tensor<T>& images, const mim::MaskSet& masks,
                     double loss, std::int64_t iteration, const io::Json& recipe) {
  io::SafetensorsWriter w;
  w.add("input", images.template cast<float>());
  w.add("mask", masks.mask);
  w.add("loss", Tensor<float>::full(Shape{}, float(loss)));
  for (const auto* p : params) w.add("param/" + p->name, io::to_torch_layout(*p, p->value));
  for (const auto* p : params)
    if (!p->grad.empty()) w.add("grad/" + p->name, io::to_torch_layout(*p, p->grad));
  w.add_metadata("vitfreeze.contents", "step-dump");
  w.add_metadata("vitfreeze.objective", Objective::name);
  w.add_metadata("vitfreeze.spec", io::detail::spec_json(S).dump());
  w.add_metadata("vitfreeze.objective_spec", objective_spec_json(objective).dump());
  w.add_metadata("vitfreeze.masking", masking_json(masking, S.grid()).dump());
  w.add_metadata("vitfreeze.iteration", std::to_string(iteration));
  w.add_metadata("vitfreeze.recipe", recipe.dump());
  w.write(file);
}

}  // namespace vitfreeze::train
