#pragma once
// What freezing a unit does to the training step (spec README "Freeze semantics", spec §3.6).

namespace vitfreeze::freeze {

enum class FreezeSemantics {
  // Default. The cls token belongs to unit 0 (with the patch embedding), so the frozen prefix has no
  // trainable input: it runs forward without recording the graph, and backward stops at the first
  // active unit. A frozen unit saves its weight gradient, its input gradient and its optimizer
  // update: about 2x its forward FLOPs per step. Requires that nothing trainable precedes the frozen
  // prefix (so not with the patch embedding kept trainable, ViTFreeze's --dont_freeze_pe).
  truncate,
  // ViTFreeze as published: the cls token never freezes and joins the sequence before block 1, so
  // activation gradients still flow back through every frozen block. A frozen unit saves only its
  // weight gradient and update: about 1x its forward FLOPs. Use it to reproduce the logged timings.
  vitfreeze,
};

}  // namespace vitfreeze::freeze
