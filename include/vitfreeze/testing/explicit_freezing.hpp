#pragma once
// Freezing an explicit encoder (model/encoder.hpp, any backend) by hand, as the trainer's units do,
// for tests and benchmarks that drive a model without a trainer. Frozen parameters release their
// gradient (and, on a device, optimizer state); the encoder reads freezing from them.
#include <cstddef>
#include <type_traits>
#include <vector>

namespace vitfreeze::testing {

// Blocks [0, n).
template <class Encoder>
void freeze_blocks(Encoder& e, int n) {
  for (int i = 0; i < n; ++i) {
    std::vector<std::remove_reference_t<decltype(e.cls_token)>*> ps;
    e.blocks[std::size_t(i)].collect_parameters(ps);
    for (auto* p : ps) p->freeze();
  }
}

// Truncate semantics, units [0, n): unit 0 is the patch embedding and the cls token, unit i block i - 1.
template <class Encoder>
void freeze_units(Encoder& e, int n) {
  if (n < 1) return;
  e.cls_token.freeze();
  e.patch_embed.weight.freeze();
  e.patch_embed.bias.freeze();
  freeze_blocks(e, n - 1);
}

}  // namespace vitfreeze::testing
