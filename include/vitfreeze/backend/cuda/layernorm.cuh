#pragma once
// LayerNorm over the last dimension, as cpu::layernorm_forward / layernorm_backward:
//   y = (x - mean) * rstd * gamma + beta,  rstd = 1 / sqrt(var + eps), biased variance.
// Activations and parameters are T (fp32 or bf16); mean, rstd and the parameter gradients are fp32.
// residual_layernorm_forward fuses the residual add in front (h = x + residual is written out because
// the next residual add and the backward need it), saving one read and one write of h.
//
// Rows are short (D = 192..1024 in ViTs) and the kernels are memory bound, so each row belongs to one
// warp (8 rows per block, no block barriers): every lane loads its part of the row once, with 16-byte
// vectors when D % kVec == 0 and the pointers are aligned, keeps it in registers for the two-pass
// statistics and the output pass, and the reductions are warp shuffles. Rows wider than 8 vectors per
// lane, or misaligned ones too wide for 8 scalars per lane, take a warp-per-row loop that re-reads
// global memory (L1/L2 hits).
// The parameter gradients are column sums over all rows: the two-stage reduction of reduce.cuh.
#include <cstdint>
#include <type_traits>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/backend/cuda/reduce.cuh"

namespace vitfreeze::cuda {

namespace kernels {
inline constexpr int kRowsPerBlock = detail::kBlock / 32;  // one warp per row

// Register-resident row: lane handles vectors v = lane + 32 k (k < kVecs) of W elements each.
// residual == nullptr: plain LayerNorm of x. Otherwise h = x + residual (rounded to T) is written to
// sum_out and normalised. y may alias x (every element is read before it is written, by one lane).
template <DeviceScalar T, int W, int kVecs>
__global__ void __launch_bounds__(detail::kBlock)
    layernorm_forward_warp(const T* x, const T* residual, T* sum_out, const T* gamma, const T* beta, T* y,
                           float* mean_out, float* rstd_out, std::int64_t rows, std::int64_t D, float eps) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;  // the whole warp leaves together
  const int lane = threadIdx.x % 32;
  const std::int64_t offset = row * D;
  float v[kVecs][W];
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const std::int64_t i = std::int64_t(lane + 32 * k) * W;
    if (i < D) {
      load_vec<T, W>(x + offset + i, v[k]);
      if (residual) {
        float r[W];
        load_vec<T, W>(residual + offset + i, r);
#pragma unroll
        for (int w = 0; w < W; ++w) v[k][w] = to_float(from_float<T>(v[k][w] + r[w]));  // h as stored
        store_vec<T, W>(sum_out + offset + i, v[k]);
      }
#pragma unroll
      for (int w = 0; w < W; ++w) s += v[k][w];
    }
  }
  const float mean = detail::warp_sum(s) / static_cast<float>(D);
  float q = 0.0f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k)
    if (std::int64_t(lane + 32 * k) * W < D)
#pragma unroll
      for (int w = 0; w < W; ++w) q += (v[k][w] - mean) * (v[k][w] - mean);
  const float rstd = 1.0f / sqrtf(detail::warp_sum(q) / static_cast<float>(D) + eps);
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const std::int64_t i = std::int64_t(lane + 32 * k) * W;
    if (i < D) {
      float g[W], b[W], out[W];
      load_vec<T, W>(gamma + i, g);
      load_vec<T, W>(beta + i, b);
#pragma unroll
      for (int w = 0; w < W; ++w) out[w] = (v[k][w] - mean) * rstd * g[w] + b[w];
      store_vec<T, W>(y + offset + i, out);
    }
  }
  if (lane == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

// Any D, any alignment: warp per row, scalar loads, each pass re-reads the row.
template <DeviceScalar T>
__global__ void __launch_bounds__(detail::kBlock)
    layernorm_forward_loop(const T* x, const T* residual, T* sum_out, const T* gamma, const T* beta, T* y,
                           float* mean_out, float* rstd_out, std::int64_t rows, std::int64_t D, float eps) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const std::int64_t offset = row * D;
  const T* src = x + offset;
  if (residual) {
    for (std::int64_t i = lane; i < D; i += 32)
      sum_out[offset + i] = from_float<T>(to_float(x[offset + i]) + to_float(residual[offset + i]));
    src = sum_out + offset;  // each lane re-reads only the elements it wrote itself
  }
  float s = 0.0f;
  for (std::int64_t i = lane; i < D; i += 32) s += to_float(src[i]);
  const float mean = detail::warp_sum(s) / static_cast<float>(D);
  float q = 0.0f;
  for (std::int64_t i = lane; i < D; i += 32) {
    const float d = to_float(src[i]) - mean;
    q += d * d;
  }
  const float rstd = 1.0f / sqrtf(detail::warp_sum(q) / static_cast<float>(D) + eps);
  for (std::int64_t i = lane; i < D; i += 32)
    y[offset + i] = from_float<T>((to_float(src[i]) - mean) * rstd * to_float(gamma[i]) + to_float(beta[i]));
  if (lane == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

// dx += rstd * (g - mean(g) - xhat * mean(g xhat)), g = dy * gamma; g and xhat stay in registers.
template <DeviceScalar T, int W, int kVecs>
__global__ void __launch_bounds__(detail::kBlock)
    layernorm_backward_input_warp(const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd,
                                  T* dx, std::int64_t rows, std::int64_t D) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const std::int64_t offset = row * D;
  const float mu = mean[row], rs = rstd[row];
  float g[kVecs][W], xhat[kVecs][W];
  float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const std::int64_t i = std::int64_t(lane + 32 * k) * W;
    if (i < D) {
      float gm[W];
      load_vec<T, W>(dy + offset + i, g[k]);
      load_vec<T, W>(x + offset + i, xhat[k]);
      load_vec<T, W>(gamma + i, gm);
#pragma unroll
      for (int w = 0; w < W; ++w) {
        g[k][w] *= gm[w];
        xhat[k][w] = (xhat[k][w] - mu) * rs;
        s1 += g[k][w];
        s2 += g[k][w] * xhat[k][w];
      }
    }
  }
  const float m1 = detail::warp_sum(s1) / static_cast<float>(D);
  const float m2 = detail::warp_sum(s2) / static_cast<float>(D);
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const std::int64_t i = std::int64_t(lane + 32 * k) * W;
    if (i < D) {
      float d[W];
      load_vec<T, W>(dx + offset + i, d);
#pragma unroll
      for (int w = 0; w < W; ++w) d[w] += rs * (g[k][w] - m1 - xhat[k][w] * m2);
      store_vec<T, W>(dx + offset + i, d);
    }
  }
}

template <DeviceScalar T>
__global__ void __launch_bounds__(detail::kBlock)
    layernorm_backward_input_loop(const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd,
                                  T* dx, std::int64_t rows, std::int64_t D) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const std::int64_t offset = row * D;
  const float mu = mean[row], rs = rstd[row];
  float s1 = 0.0f, s2 = 0.0f;
  for (std::int64_t i = lane; i < D; i += 32) {
    const float g = to_float(dy[offset + i]) * to_float(gamma[i]);
    s1 += g;
    s2 += g * (to_float(x[offset + i]) - mu) * rs;
  }
  const float m1 = detail::warp_sum(s1) / static_cast<float>(D);
  const float m2 = detail::warp_sum(s2) / static_cast<float>(D);
  for (std::int64_t i = lane; i < D; i += 32) {
    const float g = to_float(dy[offset + i]) * to_float(gamma[i]);
    const float xhat = (to_float(x[offset + i]) - mu) * rs;
    dx[offset + i] = from_float<T>(to_float(dx[offset + i]) + rs * (g - m1 - xhat * m2));
  }
}
}  // namespace kernels

namespace detail {
// dgamma[c] += sum_r dy[r, c] xhat[r, c] (output 0), dbeta[c] += sum_r dy[r, c] (output 1).
template <DeviceScalar T>
struct LayerNormParamSource {
  static constexpr int kOut = 2;
  const T* dy;
  const T* x;
  const float* mean;
  const float* rstd;
  std::int64_t cols;
  template <int W>
  __device__ __forceinline__ void load(std::int64_t r, std::int64_t c, float (&acc)[2][W]) const {
    float g[W], xv[W];
    load_vec<T, W>(dy + r * cols + c, g);
    load_vec<T, W>(x + r * cols + c, xv);
    const float mu = mean[r], rs = rstd[r];
#pragma unroll
    for (int w = 0; w < W; ++w) {
      acc[0][w] += g[w] * ((xv[w] - mu) * rs);
      acc[1][w] += g[w];
    }
  }
};

// Calls f(integral_constant W, integral_constant kVecs) for the register-resident row kernels, or
// returns false when the row needs more than 8 vectors per lane (then the loop kernel runs).
template <DeviceScalar T, class F>
bool with_row_layout(std::int64_t D, bool vectorised, F&& f) {
  auto pick = [&](auto width) {
    constexpr int W = decltype(width)::value;
    const std::int64_t per_lane = (D / W + 31) / 32;
    using std::integral_constant;
    if (per_lane <= 1) f(width, integral_constant<int, 1>{});
    else if (per_lane <= 2) f(width, integral_constant<int, 2>{});
    else if (per_lane <= 3) f(width, integral_constant<int, 3>{});
    else if (per_lane <= 4) f(width, integral_constant<int, 4>{});
    else if (per_lane <= 6) f(width, integral_constant<int, 6>{});
    else if (per_lane <= 8) f(width, integral_constant<int, 8>{});
    else return false;
    return true;
  };
  return vectorised ? pick(std::integral_constant<int, kVec<T>>{}) : pick(std::integral_constant<int, 1>{});
}

template <DeviceScalar T>
void layernorm_forward_any(CudaContext& ctx, const T* x, const T* residual, T* sum_out, const T* gamma,
                           const T* beta, T* y, float* mean_out, float* rstd_out, std::int64_t rows, std::int64_t D,
                           double eps, const char* name) {
  if (rows <= 0) return;
  const auto blocks = static_cast<unsigned>((rows + kernels::kRowsPerBlock - 1) / kernels::kRowsPerBlock);
  const float e = static_cast<float>(eps);
  const bool vec = D % kVec<T> == 0 && all_aligned16(x, residual, sum_out, gamma, beta, y);
  const bool registers = with_row_layout<T>(D, vec, [&](auto w, auto k) {
    kernels::layernorm_forward_warp<T, decltype(w)::value, decltype(k)::value><<<blocks, kBlock, 0, ctx.stream()>>>(
        x, residual, sum_out, gamma, beta, y, mean_out, rstd_out, rows, D, e);
  });
  if (!registers)
    kernels::layernorm_forward_loop<T><<<blocks, kBlock, 0, ctx.stream()>>>(x, residual, sum_out, gamma, beta, y,
                                                                             mean_out, rstd_out, rows, D, e);
  check_launch(name);
}
}  // namespace detail

template <DeviceScalar T>
void layernorm_forward(CudaContext& ctx, const T* x, const T* gamma, const T* beta, T* y, float* mean_out,
                       float* rstd_out, std::int64_t rows, std::int64_t D, double eps) {
  detail::layernorm_forward_any<T>(ctx, x, nullptr, nullptr, gamma, beta, y, mean_out, rstd_out, rows, D, eps,
                                   "layernorm_forward");
}

// sum_out = x + residual; y = LayerNorm(sum_out). sum_out must not alias x or residual.
template <DeviceScalar T>
void residual_layernorm_forward(CudaContext& ctx, const T* x, const T* residual, T* sum_out, const T* gamma,
                                const T* beta, T* y, float* mean_out, float* rstd_out, std::int64_t rows,
                                std::int64_t D, double eps) {
  detail::layernorm_forward_any<T>(ctx, x, residual, sum_out, gamma, beta, y, mean_out, rstd_out, rows, D, eps,
                                   "residual_layernorm_forward");
}

// Accumulates dx, dgamma, dbeta (each may be null); x is the LayerNorm input (sum_out when fused).
template <DeviceScalar T>
void layernorm_backward(CudaContext& ctx, const T* dy, const T* x, const T* gamma, const float* mean,
                        const float* rstd, T* dx, float* dgamma, float* dbeta, std::int64_t rows, std::int64_t D) {
  if (rows <= 0) return;
  if (dx) {
    const auto blocks = static_cast<unsigned>((rows + kernels::kRowsPerBlock - 1) / kernels::kRowsPerBlock);
    const bool vec = D % kVec<T> == 0 && all_aligned16(dy, x, gamma, dx);
    const bool registers = detail::with_row_layout<T>(D, vec, [&](auto w, auto k) {
      kernels::layernorm_backward_input_warp<T, decltype(w)::value, decltype(k)::value>
          <<<blocks, detail::kBlock, 0, ctx.stream()>>>(dy, x, gamma, mean, rstd, dx, rows, D);
    });
    if (!registers)
      kernels::layernorm_backward_input_loop<T><<<blocks, detail::kBlock, 0, ctx.stream()>>>(dy, x, gamma, mean, rstd,
                                                                                            dx, rows, D);
    check_launch("layernorm_backward_input");
  }
  if (dgamma || dbeta) {
    const bool vec = D % kVec<T> == 0 && all_aligned16(dy, x);
    detail::column_reduce<T>(ctx, detail::LayerNormParamSource<T>{dy, x, mean, rstd, D}, rows, D, vec,
                             detail::ColumnOutputs<2>{{dgamma, dbeta}}, "layernorm_backward_params");
  }
}

}  // namespace vitfreeze::cuda
