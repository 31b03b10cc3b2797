#pragma once
// LocalMIM's HOG targets on the device, the formula of backend/cpu/hog.hpp (reflect-padded Sobel pair
// g0 = left - right, g1 = top - bottom; mag = sqrt(g0^2 + g1^2); hard bin floor(atan2(g0, g1) / pi
// * nbins) mod nbins; mean over each pool x pool cell; L2 over the bins with max(norm, 1e-12)),
// for any number of channels, one pool size per call.
//
// One thread per (image, channel, cell) histogram walks its cell's pixels in raster order, the
// order in which the CPU adds them, and every step is an explicitly rounded fp32 operation (no FMA
// contraction), so the sums match the CPU's bit for bit; only atan2f may differ from the host's by
// an ulp, which moves a pixel to the next bin only when its phase lies on a bin edge.
//
// Output rows: [B, lead + cells, C * nbins], value (b, lead + cell, c * nbins + k); the `lead` rows of
// each sample are zero. lead = 1 lines a scale-1 target up with a prediction that keeps the
// decoder's cls row (as patch_targets.cuh does for MAE); maps without a cls row use lead = 0.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/backend/geometry.hpp"

namespace vitfreeze::cuda {

inline constexpr int kMaxHogBins = 32;  // per-thread histogram size (LocalMIM uses 9 or 18)

namespace kernels {
__device__ __forceinline__ std::int64_t hog_reflect(std::int64_t i, std::int64_t n) {
  return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

template <DeviceScalar T>
__global__ void hog_cells(const float* images, T* target, HogGeometry g, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    // i = ((b * C + c) * rows_per_sample + r): neighbouring threads read neighbouring cells of one plane.
    const std::int64_t r = i % g.rows_per_sample(), plane = i / g.rows_per_sample(), c = plane % g.channels,
                       b = plane / g.channels;
    T* out = target + (b * g.rows_per_sample() + r) * g.row_width() + c * g.nbins;
    if (r < g.lead) {
      for (int k = 0; k < g.nbins; ++k) out[k] = from_float<T>(0.0f);
      continue;
    }
    const std::int64_t cell = r - g.lead, y0 = cell / g.cells_w() * g.pool, x0 = cell % g.cells_w() * g.pool;
    const float* x = images + plane * g.height * g.width;
    float hist[kMaxHogBins];
    for (int k = 0; k < g.nbins; ++k) hist[k] = 0.0f;
    for (std::int64_t row = y0; row < y0 + g.pool; ++row) {
      const float* up = x + hog_reflect(row - 1, g.height) * g.width;
      const float* mid = x + row * g.width;
      const float* down = x + hog_reflect(row + 1, g.height) * g.width;
      for (std::int64_t col = x0; col < x0 + g.pool; ++col) {
        const std::int64_t cl = hog_reflect(col - 1, g.width), cr = hog_reflect(col + 1, g.width);
        // (a + 2 b) + c, each operation rounded as the CPU rounds it.
        const float g0 = __fadd_rn(__fadd_rn(__fsub_rn(up[cl], up[cr]), __fmul_rn(2.0f, __fsub_rn(mid[cl], mid[cr]))),
                                   __fsub_rn(down[cl], down[cr]));
        const float g1 = __fadd_rn(__fadd_rn(__fsub_rn(up[cl], down[cl]), __fmul_rn(2.0f, __fsub_rn(up[col], down[col]))),
                                   __fsub_rn(up[cr], down[cr]));
        if (g0 == 0.0f && g1 == 0.0f) continue;
        const float mag = __fsqrt_rn(__fadd_rn(__fmul_rn(g0, g0), __fmul_rn(g1, g1)));
        const float scaled = __fmul_rn(__fdiv_rn(atan2f(g0, g1), 3.14159265358979323846f), float(g.nbins));
        int bin = static_cast<int>(floorf(scaled)) % g.nbins;
        if (bin < 0) bin += g.nbins;
        hist[bin] = __fadd_rn(hist[bin], mag);
      }
    }
    const float inv_area = __fdiv_rn(1.0f, float(g.pool * g.pool));
    float squares = 0.0f;
    for (int k = 0; k < g.nbins; ++k) {
      hist[k] = __fmul_rn(hist[k], inv_area);
      squares = __fadd_rn(squares, __fmul_rn(hist[k], hist[k]));
    }
    const float norm = fmaxf(__fsqrt_rn(squares), static_cast<float>(kHogNormEps));
    for (int k = 0; k < g.nbins; ++k) out[k] = from_float<T>(__fdiv_rn(hist[k], norm));
  }
}
}  // namespace kernels

// images fp32 [B, C, H, W] (normalised, as the CPU reads them) -> target [B, lead + cells, C * nbins].
template <DeviceScalar T>
void hog_targets(CudaContext& ctx, const float* images, T* target, const HogGeometry& g) {
  if (g.nbins < 1 || g.nbins > kMaxHogBins) throw ConfigError("cuda::hog_targets: nbins must be in 1.." + std::to_string(kMaxHogBins));
  if (g.pool < 1 || g.height % g.pool != 0 || g.width % g.pool != 0)
    throw ConfigError("cuda::hog_targets: pool " + std::to_string(g.pool) + " does not tile the image");
  if (g.height < 2 || g.width < 2) throw ShapeError("cuda::hog_targets: reflect padding needs H, W >= 2");
  const std::int64_t n = g.batch * g.channels * g.rows_per_sample();
  if (n <= 0) return;
  kernels::hog_cells<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(images, target, g, n);
  check_launch("hog_cells");
}

}  // namespace vitfreeze::cuda
