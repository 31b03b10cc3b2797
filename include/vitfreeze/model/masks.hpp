#pragma once
// One batch's masks in a backend's memory: the token bookkeeping every objective reads (visible
// patches, the inverse shuffle) and the per-row loss weights of a pixel objective (1 on removed
// patches, 0 on kept ones and on the cls row the predictions keep).
//
// assign() copies new masks into the same buffers: later batches must have the same shape and the
// same number of removed patches, so that a captured GPU step (which reads these addresses and was
// built with this weight sum) stays valid. On the CPU the buffers are the host masks themselves.
#include <vector>

#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/model/module.hpp"

namespace vitfreeze::model {

template <Backend B, class M>
struct Masks {
  std::int64_t batch = 0, patches = 0, keep = 0;
  int views = 1;
  ArrayOf<B, std::int32_t> ids_keep, ids_restore;  // [B, K], [B, L]
  ArrayOf<B, M> loss_weight;                       // [B, 1 + L]
  double weight_sum = 0;                           // removed patches in the batch

  static Masks upload(typename B::Context& ctx, const mim::MaskSet& m) {
    Masks d;
    d.assign(ctx, m);
    return d;
  }

  void assign(typename B::Context& ctx, const mim::MaskSet& m) {
    if (!m.source_image.empty())
      throw ConfigError("model::Masks: window masks (LoMaR) need their own objective, not per-image token masks");
    Tensor<M> weight(Shape{m.batch, m.patches + 1});
    double removed = 0;
    for (std::int64_t b = 0; b < m.batch; ++b)
      for (std::int64_t l = 0; l < m.patches; ++l) {
        const M w = m.mask[b * m.patches + l] ? M(1) : M(0);
        weight[b * (m.patches + 1) + 1 + l] = w;
        removed += double(w);
      }
    if (!ids_keep.empty() && (m.batch != batch || m.patches != patches || m.keep != keep || m.views != views ||
                              removed != weight_sum))
      throw ShapeError("model::Masks::assign: new masks differ in shape or removed count from these buffers");
    batch = m.batch, patches = m.patches, keep = m.keep, views = m.views;
    weight_sum = removed;
    assign_from_host<B>(ctx, ids_keep, m.ids_keep);
    assign_from_host<B>(ctx, ids_restore, m.ids_restore);
    assign_from_host<B>(ctx, loss_weight, weight);
  }
};

}  // namespace vitfreeze::model
