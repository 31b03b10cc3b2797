#pragma once
// MAE-lite with attention distillation (mim::MaeLiteDistill), explicit: the MAE step, plus the frozen
// teacher encoder on the same visible patches (forward only, nothing kept but its last block's qkv),
// the student's last-block logits mapped over heads by the adapter (one GEMM per sample) and pulled
// to the teacher's by the mean squared error. Its gradient enters the student's last block as an
// extra qkv gradient (model::Block::backward), so the MAE backward runs once for both terms.
// The backend needs the attention-logits kernels (backend/backend.hpp).
#include "vitfreeze/mim/mae_distill.hpp"
#include "vitfreeze/model/mae.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P, mim::ReconstructionTarget Target = mim::NormalizedPixels>
  requires BackendFor<B, P>
class MaeDistill {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using Student = Mae<B, P, Target>;
  using MaskBuffers = typename Student::MaskBuffers;
  static constexpr const char* name = "mae-lite-distill";

  template <class HostEncoder, class HostObjective>
  MaeDistill(Context& ctx, HostEncoder& host_encoder, HostObjective& host)
      : mae(ctx, host_encoder, host), teacher(ctx, host.teacher), adapter(ctx, host.adapter),
        student_heads_(HostEncoder::spec.heads), teacher_heads_(HostObjective::teacher_spec.heads) {
    static_assert(HostObjective::distill_weight == 1.0, "model::MaeDistill: the reference weighs the term 1.0");
  }

  MaskBuffers upload_masks(Context& ctx, const mim::MaskSet& m) const { return mae.upload_masks(ctx, m); }

  // loss[0] = L_MAE + the distillation term (loss[1]: MAE's weight sum).
  void forward_backward(Context& ctx, const ArrayOf<B, M>& images, const MaskBuffers& m, double* loss,
                        const float* loss_scale = nullptr, double weight = 1.0) const {
    typename Student::Step step;
    mae.forward(ctx, images, m, loss, step);
    const auto& saved = step.encoder;
    if (saved.blocks.empty() || saved.first_saved + int(saved.blocks.size()) != mae.encoder.depth())
      throw ConfigError("model::MaeDistill: the student's last block must train (it carries the distilled attention)");
    const std::int64_t Bn = m.batch, Tn = m.keep + 1, TT = Tn * Tn, Hs = student_heads_, Ht = teacher_heads_;
    const AttentionShape student{Bn, Tn, Hs, mae.encoder.dim() / Hs};
    const Array& student_qkv = saved.blocks.back().qkv;
    Array student_logits = B::template empty<T>(ctx, Shape{Bn, Hs, Tn, Tn});
    B::attention_logits_forward(ctx, student_qkv.data(), student_logits.data(), student);
    Array mapped = B::template empty<T>(ctx, Shape{Bn, Ht, Tn, Tn});
    for (std::int64_t b = 0; b < Bn; ++b)  // [Ht, TT] = W [Ht, Hs] x logits_b [Hs, TT]
      B::gemm(ctx, false, false, Ht, TT, Hs, 1.0, adapter.value(), Hs, student_logits.data() + b * Hs * TT, TT, 0.0,
              mapped.data() + b * Ht * TT, TT);
    const Array target = teacher_logits(ctx, images, m);

    const std::int64_t rows = Bn * Ht * Tn;
    const M* all_rows = nullptr;  // every element weighs 1: the plain mean
    ArrayOf<B, double> term = B::template empty<double>(ctx, Shape{2});
    B::masked_mse_forward(ctx, mapped.data(), target.data(), all_rows, rows, Tn, term.data());
    B::add_in_place(ctx, loss, term.data(), 1);
    Array dmapped = B::template zeros<T>(ctx, mapped.shape());
    B::masked_mse_backward(ctx, weight, mapped.data(), target.data(), all_rows, double(rows), dmapped.data(), rows, Tn, 0,
                           loss_scale);
    Array dlogits = B::template empty<T>(ctx, student_logits.shape());
    for (std::int64_t b = 0; b < Bn; ++b) {
      const T* dm = dmapped.data() + b * Ht * TT;
      if (adapter.trainable())  // dW += dmapped_b logits_b^T
        B::gemm(ctx, false, true, Ht, Hs, TT, 1.0, dm, TT, student_logits.data() + b * Hs * TT, TT, 1.0, adapter.grad(), Hs);
      B::gemm(ctx, true, false, Hs, TT, Ht, 1.0, adapter.value(), Hs, dm, TT, 0.0, dlogits.data() + b * Hs * TT, TT);
    }
    Array dqkv = B::template zeros<T>(ctx, student_qkv.shape());
    B::attention_logits_backward(ctx, dlogits.data(), student_qkv.data(), dqkv.data(), student);
    mae.backward(ctx, m, step, loss_scale, weight, dqkv.data());
  }

  // The teacher's last-block logits [B, H_t, 1 + K, 1 + K] on the batch's visible patches.
  Array teacher_logits(Context& ctx, const ArrayOf<B, M>& images, const MaskBuffers& m) const {
    Array qkv;
    teacher.forward(ctx, as_activation<B, P>(ctx, images), m.ids_keep.data(), m.batch, m.keep, 1, nullptr, &qkv);
    const std::int64_t Tn = m.keep + 1;
    Array logits = B::template empty<T>(ctx, Shape{m.batch, teacher_heads_, Tn, Tn});
    B::attention_logits_forward(ctx, qkv.data(), logits.data(),
                                AttentionShape{m.batch, Tn, teacher_heads_, teacher.dim() / teacher_heads_});
    return logits;
  }

  // The encoder's, the decoder's, then the adapter (the host objective's order); never the teacher's.
  template <class List>
  void collect_parameters(List& out) {
    mae.collect_parameters(out);
    out.push_back(&adapter);
  }
  template <class List>
  void collect_objective_parameters(List& out) {
    mae.collect_objective_parameters(out);
    out.push_back(&adapter);
  }

  Student mae;
  Encoder<B, P> teacher;
  ParameterOf<B, P> adapter;

 private:
  std::int64_t student_heads_, teacher_heads_;
};

}  // namespace vitfreeze::model
