#pragma once
// Spatial kernels on channels-last maps [B, H, W, C], as cpu/spatial.hpp (same index maps, same
// arithmetic order), for LocalMIM's scale heads:
//   pixel_shuffle_2x2  [B, h, w, 4C] -> [B, 2h, 2w, C] (+ bias[C]): y[b, 2i+dy, 2j+dx, c] = x[b, i, j, 4c + 2dy + dx]
//   avg_pool_2x2       [B, 2h, 2w, C] -> [B, h, w, C], the mean of each 2x2 block
// The input map may sit behind `skip` leading rows per sample (the
// decoder's cls row: sample b's pixel p is row b * (skip + pixels) + skip + p), so the decoder
// output is read in place; the backwards overwrite their whole output, writing zeros into the
// skipped rows (the cls row gets no gradient, as the CPU's slice backward gives). MapGeometry:
// backend/geometry.hpp.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/backend/geometry.hpp"

namespace vitfreeze::cuda {

namespace kernels {
#define VITFREEZE_GRID_STRIDE(i, n) \
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < (n); i += std::int64_t(gridDim.x) * blockDim.x)

// One thread per output element y[b, Y, X, c].
template <DeviceScalar T>
__global__ void pixel_shuffle_2x2_forward(const T* x, const T* bias, T* y, MapGeometry g, std::int64_t C, std::int64_t n) {
  VITFREEZE_GRID_STRIDE(i, n) {
    const std::int64_t c = i % C, pixel = i / C, X = pixel % (2 * g.width), Y = pixel / (2 * g.width) % (2 * g.height),
                       b = pixel / (4 * g.pixels());
    const std::int64_t src_row = b * g.rows_per_sample() + g.skip + (Y / 2) * g.width + X / 2;
    const float v = to_float(x[src_row * 4 * C + 4 * c + 2 * (Y % 2) + X % 2]);
    y[i] = from_float<T>(bias ? v + to_float(bias[c]) : v);
  }
}

// One thread per input-gradient element dx[row, n4], n4 = 4c + 2dy + dx; skipped rows get 0.
template <DeviceScalar T>
__global__ void pixel_shuffle_2x2_backward(const T* dy, T* dx, MapGeometry g, std::int64_t C, std::int64_t n) {
  VITFREEZE_GRID_STRIDE(i, n) {
    const std::int64_t n4 = i % (4 * C), row = i / (4 * C), r = row % g.rows_per_sample(), b = row / g.rows_per_sample();
    if (r < g.skip) {
      dx[i] = from_float<T>(0.0f);
      continue;
    }
    const std::int64_t p = r - g.skip, pi = p / g.width, pj = p % g.width, c = n4 / 4, ky = n4 % 4 / 2, kx = n4 % 2;
    dx[i] = dy[((b * 2 * g.height + 2 * pi + ky) * 2 * g.width + 2 * pj + kx) * C + c];
  }
}

// dbias[c] += sum of the GEMM's column sums 4c .. 4c + 3 (the four kernel positions of channel c).
template <class F>  // a template: header kernels must not be defined once per translation unit
__global__ void fold_kernel_position_sums(const F* column_sums, F* dbias, std::int64_t C) {
  VITFREEZE_GRID_STRIDE(c, C) {
    const F* s = column_sums + 4 * c;
    dbias[c] += ((s[0] + s[1]) + s[2]) + s[3];
  }
}

// One thread per output element y[b, i, j, c] of the pooled map (input geometry g is 2h x 2w).
template <DeviceScalar T>
__global__ void avg_pool_2x2_forward(const T* x, T* y, MapGeometry g, std::int64_t C, std::int64_t n) {
  VITFREEZE_GRID_STRIDE(k, n) {
    const std::int64_t c = k % C, pixel = k / C, w = g.width / 2, h = g.height / 2, j = pixel % w, i = pixel / w % h,
                       b = pixel / (h * w);
    const T* top = x + (b * g.rows_per_sample() + g.skip + 2 * i * g.width + 2 * j) * C + c;
    const T* bottom = top + g.width * C;
    y[k] = from_float<T>(0.25f * ((to_float(top[0]) + to_float(top[C])) + (to_float(bottom[0]) + to_float(bottom[C]))));
  }
}

// One thread per input-gradient element; skipped rows get 0.
template <DeviceScalar T>
__global__ void avg_pool_2x2_backward(const T* dy, T* dx, MapGeometry g, std::int64_t C, std::int64_t n) {
  VITFREEZE_GRID_STRIDE(k, n) {
    const std::int64_t c = k % C, row = k / C, r = row % g.rows_per_sample(), b = row / g.rows_per_sample();
    if (r < g.skip) {
      dx[k] = from_float<T>(0.0f);
      continue;
    }
    const std::int64_t p = r - g.skip, w = g.width / 2, h = g.height / 2, i = p / g.width / 2, j = p % g.width / 2;
    dx[k] = from_float<T>(0.25f * to_float(dy[((b * h + i) * w + j) * C + c]));
  }
}
#undef VITFREEZE_GRID_STRIDE
}  // namespace kernels

// x: g.rows() rows of 4C values -> y [B, 2h, 2w, C] (+ bias [C] when not null).
template <DeviceScalar T>
void pixel_shuffle_2x2_forward(CudaContext& ctx, const T* x, const T* bias, T* y, const MapGeometry& g, std::int64_t C) {
  const std::int64_t n = g.batch * 4 * g.pixels() * C;
  if (n <= 0) return;
  kernels::pixel_shuffle_2x2_forward<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(x, bias, y, g, C, n);
  check_launch("pixel_shuffle_2x2_forward");
}

// dy [B, 2h, 2w, C] -> dx: g.rows() rows of 4C values (overwritten; skipped rows zero).
template <DeviceScalar T>
void pixel_shuffle_2x2_backward(CudaContext& ctx, const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
  const std::int64_t n = g.rows() * 4 * C;
  if (n <= 0) return;
  kernels::pixel_shuffle_2x2_backward<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(dy, dx, g, C, n);
  check_launch("pixel_shuffle_2x2_backward");
}

// The shuffle's bias gradient from the column sums [4C] of its input gradient (what the weight
// GEMM's bias-gradient epilogue gives): dbias [C] += the four kernel positions of each channel.
inline void fold_kernel_position_sums(CudaContext& ctx, const float* column_sums, float* dbias, std::int64_t C) {
  if (C <= 0) return;
  kernels::fold_kernel_position_sums<float><<<detail::grid_for(C), detail::kBlock, 0, ctx.stream()>>>(column_sums, dbias, C);
  check_launch("fold_kernel_position_sums");
}

// x: g.rows() rows of C values (g.height, g.width even) -> y [B, h/2, w/2, C].
template <DeviceScalar T>
void avg_pool_2x2_forward(CudaContext& ctx, const T* x, T* y, const MapGeometry& g, std::int64_t C) {
  if (g.height % 2 != 0 || g.width % 2 != 0) throw ShapeError("cuda::avg_pool_2x2: height and width must be even");
  const std::int64_t n = g.batch * g.pixels() / 4 * C;
  if (n <= 0) return;
  kernels::avg_pool_2x2_forward<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(x, y, g, C, n);
  check_launch("avg_pool_2x2_forward");
}

// dy [B, h/2, w/2, C] -> dx: g.rows() rows of C values (overwritten; skipped rows zero).
template <DeviceScalar T>
void avg_pool_2x2_backward(CudaContext& ctx, const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
  if (g.height % 2 != 0 || g.width % 2 != 0) throw ShapeError("cuda::avg_pool_2x2: height and width must be even");
  const std::int64_t n = g.rows() * C;
  if (n <= 0) return;
  kernels::avg_pool_2x2_backward<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(dy, dx, g, C, n);
  check_launch("avg_pool_2x2_backward");
}

}  // namespace vitfreeze::cuda
