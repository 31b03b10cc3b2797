#pragma once
// Weight interchange with PyTorch: timm VisionTransformer and facebookresearch/mae names and shapes.
//
// export_encoder writes the encoder as timm's VisionTransformer(num_classes=0, global_pool='token')
// state_dict: cls_token [1,1,D], pos_embed [1,1+L,D] (timm keeps it as a parameter; ours is the
// fixed sin-cos table with a zero cls row, as in MAE), patch_embed.proj.weight [D,C,p,p] (the conv
// kernel; every tensor in PyTorch's layout, io/torch_layout.hpp), blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*,
// norm.*. export_pretraining adds the objective's parameters under their MAE names (decoder_embed,
// mask_token, decoder_blocks.N.*, decoder_norm, decoder_pred) and, for an MAE decoder,
// decoder_pos_embed [1,1+L,Dd], i.e. models_mae.MaskedAutoencoderViT's state_dict.
//
// Import is all-or-nothing: every expected name must be present with a floating dtype and the
// expected shape, else one CheckpointMismatch lists every missing or mismatched tensor and the model
// is untouched. Tensors the model does not have (a classifier head, fc_norm, an MAE decoder when
// only the encoder is imported) are reported in ImportReport::unused and otherwise ignored. The
// position tables must equal our fixed sin-cos tables (a learned pos_embed cannot be represented):
// checked to 1e-5 unless ImportOptions::check_position_tables is off. A relative encoder (LoMaR) has
// no position table and its iRPE tables have the same shape at any resolution, so its weights load
// into the same network at another image size.
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "vitfreeze/io/checkpoint.hpp"
#include "vitfreeze/io/torch_layout.hpp"
#include "vitfreeze/nn/pos_embed.hpp"
#include "vitfreeze/nn/vit_spec.hpp"

namespace vitfreeze::io {

struct ImportOptions {
  bool check_position_tables = true;
  double position_tolerance = 1e-5;
};

struct ImportReport {
  std::vector<std::string> loaded;  // parameter names written into the model
  std::vector<std::string> unused;  // tensors in the file that the model has no place for
};

namespace detail {

inline Json spec_json(const ViTSpec& s) {
  Json j = Json::object();
  j.set("image", s.image);
  j.set("channels", s.channels);
  j.set("patch", s.patch);
  j.set("dim", s.dim);
  j.set("depth", s.depth);
  j.set("heads", s.heads);
  j.set("mlp_ratio", s.mlp_ratio);
  // Only where it is not the default, so the architecture of every absolute spec (and every
  // checkpoint written before relative specs existed) reads exactly as before.
  if (s.relative_position()) j.set("position", "relative");
  return j;
}

// A fixed position table the file must carry as name [1, rows, dim].
template <CpuScalar T>
struct PositionTable {
  std::string name;
  Tensor<T> table;  // [rows, dim]
};

template <class Objective>
concept HasMaeDecoder = requires(Objective& o) { o.decoder.mask_token.value.dim(2); };

template <class Encoder, class Objective, CpuScalar T>
std::vector<PositionTable<T>> position_tables(Encoder& encoder, Objective* objective) {
  constexpr ViTSpec S = Encoder::spec;
  std::vector<PositionTable<T>> out;
  if constexpr (!S.relative_position()) out.push_back({"pos_embed", encoder.pos_embed()});  // none to carry
  if constexpr (HasMaeDecoder<Objective>)
    if (objective)
      out.push_back({"decoder_pos_embed", nn::sincos_pos_embed_2d<T>(objective->decoder.mask_token.value.dim(2),
                                                                     S.grid(), S.grid(), true)});
  return out;
}

template <CpuScalar T>
void write_weights(const std::filesystem::path& path, const std::vector<Parameter<T>*>& params,
                   const std::vector<PositionTable<T>>& tables, const Json& spec, const std::string& what) {
  SafetensorsWriter w;
  for (const auto* p : params) w.add(p->name, to_torch_layout(*p, p->value));
  for (const auto& t : tables) w.add(t.name, t.table.view(Shape{1, t.table.dim(0), t.table.dim(1)}));
  w.add_metadata("format", "pt");  // what safetensors.torch.save_file writes
  w.add_metadata("vitfreeze.contents", what);
  w.add_metadata("vitfreeze.spec", spec.dump());
  w.write(path);
}

template <CpuScalar T>
Tensor<T> read_floating(const SafetensorsReader& r, const std::string& name) {
  if constexpr (std::is_same_v<T, double>) return r.get_f64(name);
  else return r.get_f32(name).template cast<T>();
}

template <CpuScalar T>
ImportReport read_weights(const SafetensorsReader& r, const std::vector<Parameter<T>*>& params,
                          const std::vector<PositionTable<T>>& tables, const ImportOptions& options) {
  std::vector<std::string> problems;
  std::set<std::string> expected;
  auto check = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    expected.insert(name);
    if (!r.has(name)) {
      problems.push_back(name + ": missing (expected " + shape_text(shape) + ")");
      return;
    }
    const TensorInfo& t = r.info(name);
    const bool floating = t.dtype == DType::f32 || t.dtype == DType::f64 || t.dtype == DType::bf16 || t.dtype == DType::f16;
    if (!floating || t.shape != shape)
      problems.push_back(name + ": file has " + std::string(dtype_name(t.dtype)) + " " + shape_text(t.shape) +
                         ", expected a floating dtype " + shape_text(shape));
  };
  for (const auto* p : params) check(p->name, extents(torch_shape(*p)));
  for (const auto& t : tables) check(t.name, {1, t.table.dim(0), t.table.dim(1)});
  if (problems.empty() && options.check_position_tables)
    for (const auto& t : tables) {
      const Tensor<T> got = read_floating<T>(r, t.name);
      double worst = 0;
      std::int64_t at = 0;
      for (std::int64_t i = 0; i < got.numel(); ++i) {
        const double d = std::abs(double(got[i]) - double(t.table[i]));
        if (!(d <= worst)) worst = d, at = i;  // NaN counts as worst
      }
      if (!(worst <= options.position_tolerance))
        problems.push_back(t.name + ": differs from the fixed 2-D sin-cos table by " + std::to_string(worst) +
                           " at element " + std::to_string(at) + " (learned position embeddings are not supported)");
    }
  throw_if_problems(r, problems, "weights do not fit this model");
  ImportReport report;
  for (auto* p : params) {
    from_torch_layout(*p, read_floating<T>(r, p->name), p->value);
    report.loaded.push_back(p->name);
  }
  for (const auto& name : r.names())
    if (!expected.count(name)) report.unused.push_back(name);
  return report;
}

struct NoObjective {};

}  // namespace detail

template <class Encoder>
using ScalarOf = std::remove_cvref_t<decltype(std::declval<Encoder&>().cls_token.value[0])>;

// The encoder in timm's VisionTransformer layout (see top of file).
template <class Encoder>
void export_encoder(Encoder& encoder, const std::filesystem::path& path) {
  using T = ScalarOf<Encoder>;
  detail::write_weights<T>(path, encoder.parameters(),
                           detail::position_tables<Encoder, detail::NoObjective, T>(encoder, nullptr),
                           detail::spec_json(Encoder::spec), "encoder");
}

// Encoder plus the objective's parameters (MAE: models_mae.MaskedAutoencoderViT's state_dict).
template <class Encoder, class Objective>
void export_pretraining(Encoder& encoder, Objective& objective, const std::filesystem::path& path) {
  using T = ScalarOf<Encoder>;
  auto params = encoder.parameters();
  objective.collect_parameters(params);
  detail::write_weights<T>(path, params, detail::position_tables<Encoder, Objective, T>(encoder, &objective),
                           detail::spec_json(Encoder::spec), std::string("pretraining:") + Objective::name);
}

// timm / MAE encoder weights into `encoder` (decoder and head tensors are reported unused).
template <class Encoder>
ImportReport import_encoder(Encoder& encoder, const SafetensorsReader& file, const ImportOptions& options = {}) {
  using T = ScalarOf<Encoder>;
  return detail::read_weights<T>(file, encoder.parameters(),
                                 detail::position_tables<Encoder, detail::NoObjective, T>(encoder, nullptr), options);
}
template <class Encoder>
ImportReport import_encoder(Encoder& encoder, const std::filesystem::path& path, const ImportOptions& options = {}) {
  return import_encoder(encoder, SafetensorsReader(path), options);
}

// A whole MAE pretraining state (encoder and decoder), e.g. facebookresearch/mae's
// mae_pretrain_vit_*_full.pth converted to safetensors.
template <class Encoder, class Objective>
ImportReport import_pretraining(Encoder& encoder, Objective& objective, const SafetensorsReader& file,
                                const ImportOptions& options = {}) {
  using T = ScalarOf<Encoder>;
  auto params = encoder.parameters();
  objective.collect_parameters(params);
  return detail::read_weights<T>(file, params, detail::position_tables<Encoder, Objective, T>(encoder, &objective),
                                 options);
}

}  // namespace vitfreeze::io
