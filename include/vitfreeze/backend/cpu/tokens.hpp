#pragma once
// Token bookkeeping kernels for masking: gather visible tokens, scatter gradients back, and
// restore the full sequence with mask tokens in original patch order.
#include <cstdint>
#include <cstring>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

// out[b, k, :] = x[b, ids[b, k], :]   (x: [B, L, D], ids: [B, K])
template <CpuScalar T>
inline void gather_tokens_forward(const T* x, const std::int32_t* ids, T* out, std::int64_t B, std::int64_t L,
                                  std::int64_t K, std::int64_t D) {
#pragma omp parallel for schedule(static) if (B * K * D > 65536)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t k = 0; k < K; ++k)
      std::memcpy(out + (b * K + k) * D, x + (b * L + ids[b * K + k]) * D, sizeof(T) * D);
}
// dx[b, ids[b, k], :] += dout[b, k, :]
template <CpuScalar T>
inline void gather_tokens_backward(const T* dout, const std::int32_t* ids, T* dx, std::int64_t B, std::int64_t L,
                                   std::int64_t K, std::int64_t D) {
#pragma omp parallel for schedule(static) if (B * K * D > 65536)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t k = 0; k < K; ++k) {
      T* dst = dx + (b * L + ids[b * K + k]) * D;
      const T* src = dout + (b * K + k) * D;
      for (std::int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
}

// Decoder input: x holds [cls, K visible tokens] per sample, in shuffled order; ids_restore[b, l]
// is the shuffled position of original patch l. Output [B, 1 + L, D] = [cls, patch 0..L-1] with
// mask_token wherever the patch was removed (shuffled position >= K).
template <CpuScalar T>
inline void unshuffle_forward(const T* x, const T* mask_token, const std::int32_t* ids_restore, T* out,
                              std::int64_t B, std::int64_t K, std::int64_t L, std::int64_t D) {
#pragma omp parallel for schedule(static) if (B * L * D > 65536)
  for (std::int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * (K + 1) * D;
    T* ob = out + b * (L + 1) * D;
    std::memcpy(ob, xb, sizeof(T) * D);
    for (std::int64_t l = 0; l < L; ++l) {
      const std::int64_t pos = ids_restore[b * L + l];
      std::memcpy(ob + (l + 1) * D, pos < K ? xb + (pos + 1) * D : mask_token, sizeof(T) * D);
    }
  }
}
template <CpuScalar T>
inline void unshuffle_backward(const T* dout, const std::int32_t* ids_restore, T* dx, T* dmask_token,
                               std::int64_t B, std::int64_t K, std::int64_t L, std::int64_t D) {
  for (std::int64_t b = 0; b < B; ++b) {
    const T* db = dout + b * (L + 1) * D;
    T* xb = dx ? dx + b * (K + 1) * D : nullptr;
    if (xb)
      for (std::int64_t d = 0; d < D; ++d) xb[d] += db[d];
    for (std::int64_t l = 0; l < L; ++l) {
      const std::int64_t pos = ids_restore[b * L + l];
      T* dst = pos < K ? (xb ? xb + (pos + 1) * D : nullptr) : dmask_token;
      if (!dst) continue;
      const T* src = db + (l + 1) * D;
      for (std::int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
}

// The encoder's input sequence under masking, built after embedding the visible patches only:
// x[b, 0] = cls, x[b, 1 + k] = patch_tokens[b, k] + pos[1 + ids_keep[b, k]]   (x: [B, 1 + K, D]).
// Equal to embedding every patch, adding positions and gathering, at K/L of the GEMM work.
template <CpuScalar T>
inline void assemble_encoder_tokens(const T* patch_tokens, const T* cls, const T* pos, const std::int32_t* ids_keep,
                                    T* x, std::int64_t B, std::int64_t K, std::int64_t D) {
#pragma omp parallel for schedule(static) if (B * K * D > 65536)
  for (std::int64_t b = 0; b < B; ++b) {
    T* xb = x + b * (K + 1) * D;
    std::memcpy(xb, cls, sizeof(T) * D);
    for (std::int64_t k = 0; k < K; ++k) {
      const T* e = patch_tokens + (b * K + k) * D;
      const T* p = pos + (1 + std::int64_t(ids_keep[b * K + k])) * D;
      T* out = xb + (1 + k) * D;
      for (std::int64_t d = 0; d < D; ++d) out[d] = e[d] + p[d];
    }
  }
}

// Its backward: dx [B, 1 + K, D] -> dpatch_tokens [B, K, D] and dcls_rows [B, D] (both overwritten).
template <CpuScalar T>
inline void split_encoder_token_grads(const T* dx, T* dpatch_tokens, T* dcls_rows, std::int64_t B, std::int64_t K,
                                      std::int64_t D) {
#pragma omp parallel for schedule(static) if (B * K * D > 65536)
  for (std::int64_t b = 0; b < B; ++b) {
    const T* db = dx + b * (K + 1) * D;
    std::memcpy(dcls_rows + b * D, db, sizeof(T) * D);
    std::memcpy(dpatch_tokens + b * K * D, db + D, sizeof(T) * K * D);
  }
}

}  // namespace vitfreeze::cpu
