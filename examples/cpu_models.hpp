#pragma once
// The models only the CPU build runs (vitfreeze_pretrain and its MPI build; the GPU example keeps to
// pretrain_common.hpp's with_model): LoMaR on a relative ViT-Ti, MAE at the other geometries of the
// resolution experiments (--image 56, --patch 2), MAE on ViT-S (a teacher), and MAE-lite with
// attention distillation from a teacher file, whose encoder spec is read from the file.
#include <string>

#include "pretrain_common.hpp"
#include "vitfreeze/io/safetensors.hpp"
#include "vitfreeze/mim/mae_distill.hpp"

namespace vitfreeze::examples {

inline constexpr ViTSpec kSmall = specs::small(28, 1, 4);
// ViT-Ti at the resolution experiments' geometries (named constants: g++ 12 fails on variable
// templates as template arguments here), and the same with relative positions for LoMaR.
inline constexpr ViTSpec kTiny28p2 = specs::tiny(28, 1, 2), kTiny56p2 = specs::tiny(56, 1, 2),
                         kTiny56p4 = specs::tiny(56, 1, 4);
inline constexpr ViTSpec kLomar28p4 = specs::with_relative_position(kTiny), kLomar28p2 = specs::with_relative_position(kTiny28p2),
                         kLomar56p2 = specs::with_relative_position(kTiny56p2),
                         kLomar56p4 = specs::with_relative_position(kTiny56p4);

// The teachers a --teacher file may hold (its "vitfreeze.spec" metadata names one).
template <class Run>
int with_teacher(const std::string& file, Run&& run) {
  const io::SafetensorsReader reader(file);
  const std::string spec = reader.metadata().count("vitfreeze.spec") ? reader.metadata().at("vitfreeze.spec") : "";
  if (spec == io::detail::spec_json(kSmall).dump()) return run.template operator()<kSmall>();
  if (spec == io::detail::spec_json(kTiny).dump()) return run.template operator()<kTiny>();
  throw ConfigError("--teacher " + file + ": the encoder spec " + (spec.empty() ? "(none recorded)" : spec) +
                    " is not a teacher this program is built for: ViT-S or ViT-Ti at 28x28, patch 4 (write one with "
                    "--objective mae --model small|tiny --export-encoder FILE)");
}

// Calls run.template operator()<S, Objective>() for every --model/--objective/--image/--patch/--teacher
// the CPU build runs (checked by the parser).
template <class Run>
int with_cpu_model(const PretrainFlags& flags, Run&& run) {
  if (flags.objective == "lomar") {
    if (flags.image == 56)
      return flags.patch == 2 ? run.template operator()<kLomar56p2, mim::Lomar<kLomar56p2>>()
                              : run.template operator()<kLomar56p4, mim::Lomar<kLomar56p4>>();
    return flags.patch == 2 ? run.template operator()<kLomar28p2, mim::Lomar<kLomar28p2>>()
                            : run.template operator()<kLomar28p4, mim::Lomar<kLomar28p4>>();
  }
  if (flags.objective == "mae" && flags.model == "small") return run.template operator()<kSmall, MaeOf<kSmall>>();
  if (flags.objective == "mae" && flags.other_geometry()) {
    if (flags.image == 56)
      return flags.patch == 2 ? run.template operator()<kTiny56p2, MaeOf<kTiny56p2>>()
                              : run.template operator()<kTiny56p4, MaeOf<kTiny56p4>>();
    return run.template operator()<kTiny28p2, MaeOf<kTiny28p2>>();
  }
  if (flags.objective == "mae-lite" && flags.teacher)
    return with_teacher(*flags.teacher, [&]<ViTSpec Teacher>() {
      return run.template operator()<kTinyLite, mim::MaeLiteDistill<kTinyLite, Teacher>>();
    });
  return with_model(flags, run);
}

}  // namespace vitfreeze::examples
