#pragma once
// Multi-head attention in bf16 or fp16 (element type E; "bf16" below stands for either) on
// strided-batched cuBLASLt GEMMs (fp32 accumulation) and a few memory-bound kernels, for the ViT
// layout of cpu::attention_forward / attention_backward:
//   qkv[b, t, s*D + h*hd + d] (s in {q, k, v}, D = H*hd),   out[b, t, h*hd + d].
//
// One GEMM per (sample, head) would be thousands of tiny launches, and a head inside qkv is not at a
// single stride from the next (h steps by hd, b by T*3D), so the heads are first split out into
// contiguous T x hd matrices; then each GEMM is one strided-batched call with count = B*H:
//   forward   [q|k|v] = split(qkv);  S = Q K^T (fp32);  P = softmax(scale S) (bf16);  O = P V;
//             out = merge(O)
//   backward  dO = split(dout);  dV = P^T dO;  dP = dO V^T (fp32);  dS = P (dP - rowsum(P dP)) (bf16);
//             dQ = scale dS K;  dK = scale dS^T Q;  dqkv = merge([dQ|dK|dV])
// S and dP stay fp32 because the softmax and its backward subtract nearly equal numbers; P and dS are
// GEMM inputs and so bf16 (as in an unfused bf16 PyTorch attention). Softmax math is fp32.
// Rows of S, P, dP and dS have a stride of T rounded up to a multiple of 8 elements, so that every
// row starts 16-byte aligned and cuBLASLt can use its vectorised kernels.
//
// Memory: per call, scratch of B*H*T*ld fp32 (S or dP) plus bf16 copies of q, k, v / gradients; for
// the MAE decoder (B 256, T 197, H 16) S is 0.65 GB. The saved state is q, k, v (bf16, 3 B T D) and P
// (bf16, B H T ld). All buffers come from ctx.allocator() and go back to its cache (stream rule).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/backend/cuda/gemm.hpp"

namespace vitfreeze::cuda {

using vitfreeze::AttentionShape;

// What attention_forward_gemm keeps for attention_backward_gemm.
struct GemmAttentionSaved {
  AttentionShape shape{};      // of the forward that filled it (the backward checks it)
  std::int64_t probs_ld = 0;   // row stride of probs: T rounded up to a multiple of 8
  DeviceBuffer heads;          // bf16 [3][B*H][T][hd]: q, k, v, one contiguous T x hd matrix per (b, h)
  DeviceBuffer probs;          // bf16 [B*H][T][probs_ld]: softmax rows; columns >= T are zero
};

namespace kernels {

// One block per token row (b, t): the row's S*H*hd elements, read contiguously, go to
// dst[s][b*H + h][t][:]. Word is one bf16 (any layout) or 8 of them (16-byte loads and stores).
template <class Word>
__global__ void split_heads(const Word* src, Word* dst, std::int64_t T, int S, int H, int hd_words,
                            std::int64_t matrices) {  // matrices = B * H
  const std::int64_t bt = blockIdx.x, b = bt / T, t = bt % T;
  const int row_words = S * H * hd_words;
  const Word* in = src + bt * row_words;
  for (int i = threadIdx.x; i < row_words; i += blockDim.x) {
    const int c = i % hd_words, sh = i / hd_words, h = sh % H, s = sh / H;
    dst[((s * matrices + b * H + h) * T + t) * hd_words + c] = in[i];
  }
}

// The inverse of split_heads; the token row is written contiguously.
template <class Word>
__global__ void merge_heads(const Word* src, Word* dst, std::int64_t T, int S, int H, int hd_words,
                            std::int64_t matrices) {
  const std::int64_t bt = blockIdx.x, b = bt / T, t = bt % T;
  const int row_words = S * H * hd_words;
  Word* out = dst + bt * row_words;
  for (int i = threadIdx.x; i < row_words; i += blockDim.x) {
    const int c = i % hd_words, sh = i / hd_words, h = sh % H, s = sh / H;
    out[i] = src[((s * matrices + b * H + h) * T + t) * hd_words + c];
  }
}

// One warp per row: P = softmax(scale * S) over the first T columns, in one pass for the maximum and
// the normaliser (online: the sum is rescaled when the maximum grows) and one pass to write P.
// exp(scale * x) is computed as exp2(scale * log2(e) * x). Columns [T, ld) of P are set to zero.
template <int kWarps, class E>
__global__ void __launch_bounds__(kWarps * 32) scaled_softmax_rows(const float* scores, E* probs, std::int64_t rows,
                                                                   int T, int ld, float scale_log2e) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;  // the whole warp leaves together
  const float* s = scores + row * ld;
  E* p = probs + row * ld;
  float m = -INFINITY, z = 0.0f;  // z = sum over this lane's x of exp2((x - m) * c)
  for (int j = lane; j < T; j += 32) {
    const float x = s[j];
    if (x > m) {  // also the first element: exp2(-inf) = 0. A NaN goes to the else branch and stays.
      z = z * exp2f((m - x) * scale_log2e) + 1.0f;
      m = x;
    } else {
      z += exp2f((x - m) * scale_log2e);
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, offset), z2 = __shfl_xor_sync(0xffffffffu, z, offset);
    const float mx = fmaxf(m, m2);
    // A lane without elements has m = -inf and z = 0; (-inf) - (-inf) would be NaN.
    z = (m == -INFINITY ? 0.0f : z * exp2f((m - mx) * scale_log2e)) +
        (m2 == -INFINITY ? 0.0f : z2 * exp2f((m2 - mx) * scale_log2e));
    m = mx;
  }
  const float inv = 1.0f / z;
  for (int j = lane; j < ld; j += 32)
    p[j] = from_float<E>(j < T ? exp2f((s[j] - m) * scale_log2e) * inv : 0.0f);
}

// One warp per row: dS = P (dP - sum_j P_j dP_j), fp32 math, bf16 out; columns [T, ld) set to zero.
template <int kWarps, class E>
__global__ void __launch_bounds__(kWarps * 32) softmax_backward_rows(const E* probs, const float* dprobs,
                                                                     E* dscores, std::int64_t rows, int T, int ld) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;
  const E* p = probs + row * ld;
  const float* dp = dprobs + row * ld;
  E* ds = dscores + row * ld;
  float dot = 0.0f;
  for (int j = lane; j < T; j += 32) dot += to_float(p[j]) * dp[j];
  for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
  for (int j = lane; j < ld; j += 32) ds[j] = from_float<E>(j < T ? to_float(p[j]) * (dp[j] - dot) : 0.0f);
}

}  // namespace kernels

namespace detail {

inline constexpr int kSoftmaxWarps = 8;  // rows per block of the row kernels

inline std::int64_t attention_probs_ld(std::int64_t T) { return (T + 7) / 8 * 8; }

inline void check_gemm_attention_shape(const AttentionShape& s, const char* who) {
  if (s.batch <= 0 || s.tokens <= 0 || s.heads <= 0 || s.head_dim <= 0)
    throw ConfigError(std::string(who) + ": every attention dimension must be positive");
  // Grids have one block per token row or per 8 score rows; in-row indices and the row kernels' T are int.
  if (s.batch * s.heads * s.tokens > INT_MAX || 3 * s.dim() > INT_MAX)
    throw ConfigError(std::string(who) + ": attention shape too large");
}

// Threads for a loop over n items per block: one or more warps, the items spread evenly.
inline unsigned threads_for_row(std::int64_t n) {
  const std::int64_t rounds = (n + kBlock - 1) / kBlock;
  const std::int64_t per_round = (n + rounds - 1) / rounds;
  return static_cast<unsigned>(std::clamp<std::int64_t>((per_round + 31) / 32 * 32, 32, kBlock));
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// split: src [B, T, S, H, hd] -> dst [S][B*H][T][hd]; merge: the inverse.
template <HalfScalar E>
void move_heads(CudaContext& ctx, const E* src, E* dst, const AttentionShape& s, int S, bool split) {
  const std::int64_t matrices = s.batch * s.heads;
  const auto grid = static_cast<unsigned>(s.batch * s.tokens);
  const int H = static_cast<int>(s.heads);
  if (s.head_dim % 8 == 0 && aligned16(src) && aligned16(dst)) {  // 16-byte words
    const int words = static_cast<int>(s.head_dim / 8);
    const unsigned threads = threads_for_row(std::int64_t(S) * H * words);
    const auto* in = reinterpret_cast<const uint4*>(src);
    auto* out = reinterpret_cast<uint4*>(dst);
    if (split)
      kernels::split_heads<uint4><<<grid, threads, 0, ctx.stream()>>>(in, out, s.tokens, S, H, words, matrices);
    else
      kernels::merge_heads<uint4><<<grid, threads, 0, ctx.stream()>>>(in, out, s.tokens, S, H, words, matrices);
  } else {
    const int words = static_cast<int>(s.head_dim);
    const unsigned threads = threads_for_row(std::int64_t(S) * H * words);
    const auto* in = reinterpret_cast<const std::uint16_t*>(src);
    auto* out = reinterpret_cast<std::uint16_t*>(dst);
    if (split)
      kernels::split_heads<std::uint16_t><<<grid, threads, 0, ctx.stream()>>>(in, out, s.tokens, S, H, words, matrices);
    else
      kernels::merge_heads<std::uint16_t><<<grid, threads, 0, ctx.stream()>>>(in, out, s.tokens, S, H, words, matrices);
  }
  check_launch(split ? "split_heads" : "merge_heads");
}

inline unsigned row_kernel_grid(std::int64_t rows) {
  return static_cast<unsigned>((rows + kSoftmaxWarps - 1) / kSoftmaxWarps);
}

// The forward into caller-provided heads (bf16 [3][B*H][T][hd]) and probs (bf16 [B*H][T][ld]).
template <HalfScalar E>
void attention_forward_gemm_into(CudaContext& ctx, const E* qkv, E* out, const AttentionShape& s,
                                        E* heads, E* probs) {
  const std::int64_t T = s.tokens, hd = s.head_dim, ld = attention_probs_ld(T);
  const std::int64_t matrices = s.batch * s.heads, per_head = T * hd, per_scores = T * ld;
  const std::int64_t n = matrices * per_head;  // elements of each of q, k, v
  const E *q = heads, *k = heads + n, *v = heads + 2 * n;
  move_heads(ctx, qkv, heads, s, 3, true);

  DeviceBuffer scores = ctx.allocator().allocate(sizeof(float) * static_cast<std::size_t>(matrices * per_scores));
  gemm<E, float>(ctx, false, true, T, T, hd, 1.0f, q, hd, k, hd, 0.0f, scores.as<float>(), ld, {},
                    GemmBatch{matrices, per_head, per_head, per_scores});
  const float scale_log2e = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(hd)));
  kernels::scaled_softmax_rows<kSoftmaxWarps><<<row_kernel_grid(matrices * T), kSoftmaxWarps * 32, 0, ctx.stream()>>>(
      scores.as<float>(), probs, matrices * T, static_cast<int>(T), static_cast<int>(ld), scale_log2e);
  check_launch("scaled_softmax_rows");

  DeviceBuffer heads_out = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(n));
  gemm<E, E>(ctx, false, false, T, hd, T, 1.0f, probs, ld, v, hd, 0.0f, heads_out.template as<E>(), hd, {},
                   GemmBatch{matrices, per_scores, per_head, per_head});
  move_heads(ctx, heads_out.template as<E>(), out, s, 1, false);
}

}  // namespace detail

// Training forward: writes out [B, T, D] (overwritten) and fills `saved` (its buffers are replaced).
template <HalfScalar E>
void attention_forward_gemm(CudaContext& ctx, const E* qkv, E* out, const AttentionShape& s,
                                   GemmAttentionSaved& saved) {
  detail::check_gemm_attention_shape(s, "cuda::attention_forward_gemm");
  const std::int64_t matrices = s.batch * s.heads, ld = detail::attention_probs_ld(s.tokens);
  saved.shape = s;
  saved.probs_ld = ld;
  saved.heads = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(3 * matrices * s.tokens * s.head_dim));
  saved.probs = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(matrices * s.tokens * ld));
  detail::attention_forward_gemm_into(ctx, qkv, out, s, saved.heads.template as<E>(), saved.probs.template as<E>());
}

// Inference forward (frozen blocks, evaluation): the same output; q, k, v and P are scratch.
template <HalfScalar E>
void attention_forward_gemm_inference(CudaContext& ctx, const E* qkv, E* out, const AttentionShape& s) {
  detail::check_gemm_attention_shape(s, "cuda::attention_forward_gemm_inference");
  const std::int64_t matrices = s.batch * s.heads, ld = detail::attention_probs_ld(s.tokens);
  DeviceBuffer heads =
      ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(3 * matrices * s.tokens * s.head_dim));
  DeviceBuffer probs = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(matrices * s.tokens * ld));
  detail::attention_forward_gemm_into(ctx, qkv, out, s, heads.template as<E>(), probs.template as<E>());
}

// Backward: dqkv [B, T, 3D] is overwritten (not accumulated) with the gradient with respect to qkv.
template <HalfScalar E>
void attention_backward_gemm(CudaContext& ctx, const E* dout, const GemmAttentionSaved& saved, E* dqkv,
                                    const AttentionShape& s) {
  detail::check_gemm_attention_shape(s, "cuda::attention_backward_gemm");
  const AttentionShape& f = saved.shape;
  if (f.batch != s.batch || f.tokens != s.tokens || f.heads != s.heads || f.head_dim != s.head_dim ||
      saved.heads.empty() || saved.probs.empty())
    throw ConfigError("cuda::attention_backward_gemm: `saved` is not from a forward of this shape");
  const std::int64_t T = s.tokens, hd = s.head_dim, ld = saved.probs_ld;
  const std::int64_t matrices = s.batch * s.heads, per_head = T * hd, per_scores = T * ld;
  const std::int64_t n = matrices * per_head;
  const E* heads = saved.heads.template as<E>();
  const E *q = heads, *k = heads + n, *v = heads + 2 * n;
  const E* probs = saved.probs.template as<E>();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const GemmBatch by_scores{matrices, per_scores, per_head, per_head};  // A is a T x T matrix per head

  DeviceBuffer dout_heads = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(n));
  E* dO = dout_heads.template as<E>();
  detail::move_heads(ctx, dout, dO, s, 1, true);
  DeviceBuffer dheads = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(3 * n));
  E *dq = dheads.template as<E>(), *dk = dq + n, *dv = dq + 2 * n;

  gemm<E, E>(ctx, true, false, T, hd, T, 1.0f, probs, ld, dO, hd, 0.0f, dv, hd, {}, by_scores);  // dV = P^T dO
  DeviceBuffer dprobs = ctx.allocator().allocate(sizeof(float) * static_cast<std::size_t>(matrices * per_scores));
  gemm<E, float>(ctx, false, true, T, T, hd, 1.0f, dO, hd, v, hd, 0.0f, dprobs.as<float>(), ld, {},
                    GemmBatch{matrices, per_head, per_head, per_scores});  // dP = dO V^T
  DeviceBuffer dscores = ctx.allocator().allocate(sizeof(E) * static_cast<std::size_t>(matrices * per_scores));
  kernels::softmax_backward_rows<detail::kSoftmaxWarps>
      <<<detail::row_kernel_grid(matrices * T), detail::kSoftmaxWarps * 32, 0, ctx.stream()>>>(
          probs, dprobs.as<float>(), dscores.template as<E>(), matrices * T, static_cast<int>(T), static_cast<int>(ld));
  check_launch("softmax_backward_rows");
  const E* dS = dscores.template as<E>();
  gemm<E, E>(ctx, false, false, T, hd, T, scale, dS, ld, k, hd, 0.0f, dq, hd, {}, by_scores);  // dQ = s dS K
  gemm<E, E>(ctx, true, false, T, hd, T, scale, dS, ld, q, hd, 0.0f, dk, hd, {}, by_scores);   // dK = s dS^T Q
  detail::move_heads(ctx, dheads.template as<E>(), dqkv, s, 3, false);
}

}  // namespace vitfreeze::cuda
