#pragma once
// LayerNorm over the last dimension, as cpu::layernorm_forward / layernorm_backward:
//   y = (x - mean) * rstd * gamma + beta,  rstd = 1 / sqrt(var + eps), biased variance.
// Activations and parameters are T (fp32 or bf16); mean, rstd and the parameter gradients are fp32.
// One block per row; the statistics use two passes over the row, like the CPU kernel.
// residual_layernorm_forward fuses the residual add in front (h = x + residual is written out because
// the next residual add and the backward need it), saving one read and one write of h.
#include <algorithm>
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
// residual == nullptr: plain LayerNorm of x. Otherwise h = x + residual (rounded to T) is written to
// sum_out and normalised.
template <DeviceScalar T>
__global__ void layernorm_forward(const T* x, const T* residual, T* sum_out, const T* gamma, const T* beta, T* y,
                                  float* mean_out, float* rstd_out, std::int64_t D, float eps) {
  const std::int64_t offset = blockIdx.x * D;
  const T* src = x + offset;
  if (residual) {
    for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x)
      sum_out[offset + i] = from_float<T>(to_float(x[offset + i]) + to_float(residual[offset + i]));
    src = sum_out + offset;  // each thread re-reads only the elements it wrote itself
  }
  float s = 0.0f;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) s += to_float(src[i]);
  const float mean = detail::block_sum(s) / static_cast<float>(D);
  float q = 0.0f;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float d = to_float(src[i]) - mean;
    q += d * d;
  }
  const float var = detail::block_sum(q) / static_cast<float>(D);
  const float rstd = 1.0f / sqrtf(var + eps);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x)
    y[offset + i] = from_float<T>((to_float(src[i]) - mean) * rstd * to_float(gamma[i]) + to_float(beta[i]));
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[blockIdx.x] = mean;
    if (rstd_out) rstd_out[blockIdx.x] = rstd;
  }
}

// dx += rstd * (g dy - mean(g dy) - xhat * mean(g dy xhat)), one block per row.
template <DeviceScalar T>
__global__ void layernorm_backward_input(const T* dy, const T* x, const T* gamma, const float* mean,
                                         const float* rstd, T* dx, std::int64_t D) {
  const std::int64_t offset = blockIdx.x * D;
  const float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
  float s1 = 0.0f, s2 = 0.0f;
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float g = to_float(dy[offset + i]) * to_float(gamma[i]);
    s1 += g;
    s2 += g * (to_float(x[offset + i]) - mu) * rs;
  }
  const float m1 = detail::block_sum(s1) / static_cast<float>(D);
  const float m2 = detail::block_sum(s2) / static_cast<float>(D);
  for (std::int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float g = to_float(dy[offset + i]) * to_float(gamma[i]);
    const float xhat = (to_float(x[offset + i]) - mu) * rs;
    dx[offset + i] = from_float<T>(to_float(dx[offset + i]) + rs * (g - m1 - xhat * m2));
  }
}

// dgamma[c] += sum_r dy[r, c] xhat[r, c], dbeta[c] += sum_r dy[r, c]; the column layout of
// add_column_sums (32 columns per block, 8 row groups, fixed order). Block (x, y) sums rows
// [y * rows_per_chunk, (y + 1) * rows_per_chunk): with one chunk it adds into dgamma/dbeta; with
// several (many rows and few columns: LocalMIM's LayerNorm2d has 2e5 rows of 128 channels, which
// 4 column blocks alone would walk for milliseconds) it writes its chunk's partial sums to
// partial_g/partial_b [chunks, D], which layernorm_sum_partials adds up in chunk order.
inline constexpr int kLnColumnWidth = 32, kLnRowGroups = 8;
template <DeviceScalar T>
__global__ void layernorm_backward_params(const T* dy, const T* x, const float* mean, const float* rstd,
                                          float* dgamma, float* dbeta, float* partial_g, float* partial_b,
                                          std::int64_t rows, std::int64_t D, std::int64_t rows_per_chunk) {
  __shared__ float shared_g[kLnRowGroups][kLnColumnWidth], shared_b[kLnRowGroups][kLnColumnWidth];
  const std::int64_t c = blockIdx.x * std::int64_t(kLnColumnWidth) + threadIdx.x;
  const std::int64_t first = blockIdx.y * rows_per_chunk, last = first + rows_per_chunk < rows ? first + rows_per_chunk : rows;
  float sg = 0.0f, sb = 0.0f;
  if (c < D)
    for (std::int64_t r = first + threadIdx.y; r < last; r += kLnRowGroups) {
      const float g = to_float(dy[r * D + c]);
      sg += g * (to_float(x[r * D + c]) - mean[r]) * rstd[r];
      sb += g;
    }
  shared_g[threadIdx.y][threadIdx.x] = sg;
  shared_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && c < D) {
    float tg = 0.0f, tb = 0.0f;
    for (int k = 0; k < kLnRowGroups; ++k) {
      tg += shared_g[k][threadIdx.x];
      tb += shared_b[k][threadIdx.x];
    }
    if (gridDim.y > 1) {
      partial_g[blockIdx.y * D + c] = tg;
      partial_b[blockIdx.y * D + c] = tb;
    } else {
      if (dgamma) dgamma[c] += tg;
      if (dbeta) dbeta[c] += tb;
    }
  }
}

template <class F>  // a template: header kernels must not be defined once per translation unit
__global__ void layernorm_sum_partials(const F* partial_g, const F* partial_b, std::int64_t chunks, std::int64_t D,
                                       F* dgamma, F* dbeta) {
  for (std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; c < D; c += std::int64_t(gridDim.x) * blockDim.x) {
    F tg = 0, tb = 0;
    for (std::int64_t k = 0; k < chunks; ++k) {
      tg += partial_g[k * D + c];
      tb += partial_b[k * D + c];
    }
    if (dgamma) dgamma[c] += tg;
    if (dbeta) dbeta[c] += tb;
  }
}
}  // namespace kernels

template <DeviceScalar T>
void layernorm_forward(CudaContext& ctx, const T* x, const T* gamma, const T* beta, T* y, float* mean_out,
                       float* rstd_out, std::int64_t rows, std::int64_t D, double eps) {
  if (rows <= 0) return;
  kernels::layernorm_forward<T><<<static_cast<unsigned>(rows), detail::kBlock, 0, ctx.stream()>>>(
      x, nullptr, nullptr, gamma, beta, y, mean_out, rstd_out, D, static_cast<float>(eps));
  check_launch("layernorm_forward");
}

// sum_out = x + residual; y = LayerNorm(sum_out). sum_out must not alias x or residual.
template <DeviceScalar T>
void residual_layernorm_forward(CudaContext& ctx, const T* x, const T* residual, T* sum_out, const T* gamma,
                                const T* beta, T* y, float* mean_out, float* rstd_out, std::int64_t rows,
                                std::int64_t D, double eps) {
  if (rows <= 0) return;
  kernels::layernorm_forward<T><<<static_cast<unsigned>(rows), detail::kBlock, 0, ctx.stream()>>>(
      x, residual, sum_out, gamma, beta, y, mean_out, rstd_out, D, static_cast<float>(eps));
  check_launch("residual_layernorm_forward");
}

// Accumulates dx, dgamma, dbeta (each may be null); x is the LayerNorm input (sum_out when fused).
template <DeviceScalar T>
void layernorm_backward(CudaContext& ctx, const T* dy, const T* x, const T* gamma, const float* mean,
                        const float* rstd, T* dx, float* dgamma, float* dbeta, std::int64_t rows, std::int64_t D) {
  if (rows <= 0) return;
  if (dx) {
    kernels::layernorm_backward_input<T><<<static_cast<unsigned>(rows), detail::kBlock, 0, ctx.stream()>>>(
        dy, x, gamma, mean, rstd, dx, D);
    check_launch("layernorm_backward_input");
  }
  if (dgamma || dbeta) {
    // Row chunks of at least 4096 rows, at most 256 of them: a fixed split for a given shape, so the
    // sums stay deterministic; up to 4096 rows it is the single pass.
    constexpr std::int64_t kMinChunkRows = 4096, kMaxChunks = 256;
    const std::int64_t chunks = std::min(kMaxChunks, (rows + kMinChunkRows - 1) / kMinChunkRows);
    const std::int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
    const dim3 block(kernels::kLnColumnWidth, kernels::kLnRowGroups);
    const dim3 grid(static_cast<unsigned>((D + kernels::kLnColumnWidth - 1) / kernels::kLnColumnWidth),
                    static_cast<unsigned>(chunks));
    DeviceBuffer partials;
    if (chunks > 1) partials = ctx.allocator().allocate(sizeof(float) * 2 * static_cast<std::size_t>(chunks * D));
    float* partial_g = partials.as<float>();
    float* partial_b = partial_g ? partial_g + chunks * D : nullptr;
    kernels::layernorm_backward_params<T><<<grid, block, 0, ctx.stream()>>>(dy, x, mean, rstd, dgamma, dbeta, partial_g,
                                                                            partial_b, rows, D, rows_per_chunk);
    check_launch("layernorm_backward_params");
    if (chunks > 1) {
      kernels::layernorm_sum_partials<float><<<detail::grid_for(D), detail::kBlock, 0, ctx.stream()>>>(
          partial_g, partial_b, chunks, D, dgamma, dbeta);
      check_launch("layernorm_sum_partials");
    }
  }
}

}  // namespace vitfreeze::cuda
