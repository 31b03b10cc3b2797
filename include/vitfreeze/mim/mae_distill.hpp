#pragma once
// MAE-lite's attention distillation (peers spec §3.5): MAE-lite plus a frozen teacher encoder that
// runs on the same visible patches (same ids_keep, same order); the student's last-block
// pre-softmax attention logits q k^T / sqrt(d_h) [B, H_s, 1 + K, 1 + K] pass through a learned 1x1
// map over heads (`distill_adapter.weight` [H_t, H_s], no bias; PyTorch's default conv init) and
// are pulled to the teacher's with the mean squared error over all elements, weight 1.0:
//   loss = L_MAE + 1.0 * mean((Adapter(A_student) - A_teacher)^2).
//
// The teacher (any absolute-position ViTSpec with the student's image, channels and patch; in
// practice a wider model pretrained by this library) is frozen from construction; its weights come
// from a safetensors file with timm names through io::import_encoder(objective.teacher, file), which
// writes values only. It is not one of the objective's parameters: it gets no gradient (no buffer),
// no optimiser state, and is in no freezing unit or checkpoint; the adapter trains to the end with
// the decoder.
#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/autograd/ops/linear.hpp"
#include "vitfreeze/mim/mae_lite.hpp"

namespace vitfreeze::mim {

template <ViTSpec S, ViTSpec Teacher, CpuScalar T = float>
class MaeLiteDistill : public MaeLite<S, T> {
  using Base = MaeLite<S, T>;

 public:
  static_assert(Teacher.image == S.image && Teacher.channels == S.channels && Teacher.patch == S.patch,
                "MAE-lite distillation: the teacher must see the student's patches (same image, channels and patch)");
  static_assert(!Teacher.relative_position() && !S.relative_position(),
                "MAE-lite distillation: student and teacher see visible-patch subsets, so absolute positions");
  static constexpr const char* name = "mae-lite-distill";
  static constexpr ObjectiveFamily family = ObjectiveFamily::mae_distill;
  static constexpr double distill_weight = 1.0;
  static constexpr ViTSpec teacher_spec = Teacher;
  using Output = typename Base::Output;
  using Encoder = typename Base::Encoder;
  using TeacherEncoder = nn::ViT<Teacher, T>;

  explicit MaeLiteDistill(std::uint64_t seed = 0)
      : Base(seed), teacher(seed), adapter("distill_adapter.weight", Shape{Teacher.heads, S.heads}, true) {
    adapter.file_shape = Shape{Teacher.heads, S.heads, 1, 1};  // the reference's Conv2d(H_s, H_t, 1, bias=False)
    nn::uniform_init(adapter, 1.0 / std::sqrt(double(S.heads)), seed);
    for (auto* p : teacher.parameters()) p->freeze();
  }

  Output forward(Tape<T>& tape, Encoder& encoder, const Tensor<T>& images, const MaskSet& masks) {
    Output out = this->decode(tape, encoder.forward(tape, images, &masks.ids_keep).tokens, images, masks);
    out.loss = ops::add(tape, out.loss, distillation(tape, encoder.blocks.back().attn.last_qkv, images, masks));
    return out;
  }

  // distill_weight x MSE(Adapter(student logits), teacher logits), the student's last-block qkv given.
  Var<T> distillation(Tape<T>& tape, Var<T> student_qkv, const Tensor<T>& images, const MaskSet& masks) {
    const Tensor<T> target = teacher_logits(tape, images, masks);
    Var<T> mapped = ops::channel_mix(tape, ops::attention_logits(tape, student_qkv, S.heads), tape.parameter(adapter));
    const std::int64_t rows = target.numel() / target.dim(3);
    Var<T> mse = ops::masked_mse(tape, ops::reshape(tape, mapped, Shape{rows, target.dim(3)}),
                                 target.view(Shape{rows, target.dim(3)}));
    return distill_weight == 1.0 ? mse : ops::scale(tape, mse, distill_weight);
  }

  // The teacher's last-block logits [B, H_t, 1 + K, 1 + K] on the same visible patches (no gradient).
  Tensor<T> teacher_logits(Tape<T>& tape, const Tensor<T>& images, const MaskSet& masks) {
    NoGrad<T> no_grad(tape);
    const int last = Teacher.depth - 1;  // tapped: its activations stay on the tape
    teacher.forward(tape, images, &masks.ids_keep, std::span<const int>(&last, 1), /*final_norm=*/false);
    return tape.value(ops::attention_logits(tape, teacher.blocks.back().attn.last_qkv, Teacher.heads));
  }

  // The decoder, then the adapter (trained to the end, in the last unit); never the teacher.
  void collect_parameters(nn::ParameterList<T>& out) {
    Base::collect_parameters(out);
    out.push_back(&adapter);
  }

  TeacherEncoder teacher;
  Parameter<T> adapter;
};

}  // namespace vitfreeze::mim
