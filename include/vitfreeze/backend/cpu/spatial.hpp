#pragma once
// Spatial kernels on channels-last maps [B, H, W, C] (the layout of decoder tokens [B, H*W, C], so
// a map is a token sequence seen as a grid and a 1x1 convolution is a plain linear layer).
//
// pixel_shuffle_2x2: [B, h, w, 4C] -> [B, 2h, 2w, C] with an optional per-channel bias [C]:
//   y[b, 2i+dy, 2j+dx, c] = x[b, i, j, 4c + 2dy + dx] + bias[c]     (dy, dx in {0, 1})
// Input channel n = 4c + 2dy + dx is "output channel major, then kernel row, then kernel column",
// the order of PyTorch's nn.PixelShuffle(2) and of a ConvTranspose2d weight [Cin, Cout, 2, 2] read
// as [Cin, 4*Cout]. So ConvTranspose2d(Cin -> Cout, k = 2, s = 2) is linear(Cin -> 4*Cout, no bias)
// followed by this shuffle with the convolution's bias, and the linear weight W [4*Cout, Cin] is
// the transpose of PyTorch's weight: W[4co + 2ky + kx][ci] = W_torch[ci][co][ky][kx].
//
// avg_pool_2x2: [B, 2h, 2w, C] -> [B, h, w, C], the mean of each 2x2 block (AvgPool2d(2, 2)).
//
// Both are linear maps; each backward is the adjoint and accumulates into its gradient buffers.
#include <algorithm>
#include <cstdint>

#include "vitfreeze/backend/cpu/reduce.hpp"
#include "vitfreeze/backend/geometry.hpp"
#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

// x [B, h, w, 4C], bias [C] or null -> y [B, 2h, 2w, C].
template <CpuScalar T>
inline void pixel_shuffle_2x2_forward(const T* x, const T* bias, T* y, std::int64_t B, std::int64_t h, std::int64_t w,
                                      std::int64_t C) {
#pragma omp parallel for schedule(static) if (B * h * w * C > 65536)
  for (std::int64_t row = 0; row < B * h; ++row) {  // row = b * h + i
    for (std::int64_t j = 0; j < w; ++j) {
      const T* src = x + (row * w + j) * 4 * C;
      for (std::int64_t dy = 0; dy < 2; ++dy)
        for (std::int64_t dx = 0; dx < 2; ++dx) {
          // Output pixel (2i + dy, 2j + dx) of image b: output row index b * 2h + 2i + dy = 2 row + dy.
          T* dst = y + ((2 * row + dy) * 2 * w + 2 * j + dx) * C;
          const T* s = src + 2 * dy + dx;
          if (bias)
            for (std::int64_t c = 0; c < C; ++c) dst[c] = s[4 * c] + bias[c];
          else
            for (std::int64_t c = 0; c < C; ++c) dst[c] = s[4 * c];
        }
    }
  }
}

// dx += shuffle^T(dy), dbias += sum of dy over all pixels. Null outputs are skipped.
template <CpuScalar T>
inline void pixel_shuffle_2x2_backward(const T* dy, T* dx, T* dbias, std::int64_t B, std::int64_t h, std::int64_t w,
                                       std::int64_t C) {
  if (dx) {
#pragma omp parallel for schedule(static) if (B * h * w * C > 65536)
    for (std::int64_t row = 0; row < B * h; ++row)
      for (std::int64_t j = 0; j < w; ++j) {
        T* dst = dx + (row * w + j) * 4 * C;
        for (std::int64_t sy = 0; sy < 2; ++sy)
          for (std::int64_t sx = 0; sx < 2; ++sx) {
            const T* g = dy + ((2 * row + sy) * 2 * w + 2 * j + sx) * C;
            T* d = dst + 2 * sy + sx;
            for (std::int64_t c = 0; c < C; ++c) d[4 * c] += g[c];
          }
      }
  }
  if (dbias) add_column_sums(dy, B * 4 * h * w, C, dbias);
}

// x [B, 2h, 2w, C] -> y [B, h, w, C].
template <CpuScalar T>
inline void avg_pool_2x2_forward(const T* x, T* y, std::int64_t B, std::int64_t h, std::int64_t w, std::int64_t C) {
#pragma omp parallel for schedule(static) if (B * h * w * C > 65536)
  for (std::int64_t row = 0; row < B * h; ++row)  // output row = b * h + i reads input rows 2 row, 2 row + 1
    for (std::int64_t j = 0; j < w; ++j) {
      const T* top = x + (2 * row * 2 * w + 2 * j) * C;
      const T* bottom = top + 2 * w * C;
      T* dst = y + (row * w + j) * C;
      for (std::int64_t c = 0; c < C; ++c) dst[c] = T(0.25) * ((top[c] + top[C + c]) + (bottom[c] + bottom[C + c]));
    }
}

// dx += 1/4 dy spread over each 2x2 block.
template <CpuScalar T>
inline void avg_pool_2x2_backward(const T* dy, T* dx, std::int64_t B, std::int64_t h, std::int64_t w, std::int64_t C) {
#pragma omp parallel for schedule(static) if (B * h * w * C > 65536)
  for (std::int64_t row = 0; row < B * h; ++row)
    for (std::int64_t j = 0; j < w; ++j) {
      const T* g = dy + (row * w + j) * C;
      T* top = dx + (2 * row * 2 * w + 2 * j) * C;
      T* bottom = top + 2 * w * C;
      for (std::int64_t c = 0; c < C; ++c) {
        const T q = T(0.25) * g[c];
        top[c] += q, top[C + c] += q, bottom[c] += q, bottom[C + c] += q;
      }
    }
}

// ---- the same maps read in place behind skipped rows (MapGeometry), as the explicit model uses them:
// the inputs are g.rows() rows per call; the backwards overwrite their whole output, zero in the
// skipped rows (the cls row of a decoder's output gets no gradient from a map op).

// x: g.rows() rows of 4C values -> y [B, 2h, 2w, C] (+ bias [C] when not null).
template <CpuScalar T>
inline void pixel_shuffle_2x2_forward(const T* x, const T* bias, T* y, const MapGeometry& g, std::int64_t C) {
#pragma omp parallel for schedule(static) if (g.batch * g.pixels() * 4 * C > 65536)
  for (std::int64_t bi = 0; bi < g.batch * g.height; ++bi) {  // bi = b * h + i
    const std::int64_t b = bi / g.height, i = bi % g.height;
    for (std::int64_t j = 0; j < g.width; ++j) {
      const T* src = x + (b * g.rows_per_sample() + g.skip + i * g.width + j) * 4 * C;
      for (std::int64_t dy = 0; dy < 2; ++dy)
        for (std::int64_t dx = 0; dx < 2; ++dx) {
          T* dst = y + ((2 * bi + dy) * 2 * g.width + 2 * j + dx) * C;
          const T* s = src + 2 * dy + dx;
          for (std::int64_t c = 0; c < C; ++c) dst[c] = bias ? s[4 * c] + bias[c] : s[4 * c];
        }
    }
  }
}

// dy [B, 2h, 2w, C] -> dx: g.rows() rows of 4C values.
template <CpuScalar T>
inline void pixel_shuffle_2x2_backward(const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
#pragma omp parallel for schedule(static) if (g.rows() * 4 * C > 65536)
  for (std::int64_t row = 0; row < g.rows(); ++row) {
    T* d = dx + row * 4 * C;
    const std::int64_t r = row % g.rows_per_sample(), b = row / g.rows_per_sample();
    if (r < g.skip) {
      std::fill(d, d + 4 * C, T(0));
      continue;
    }
    const std::int64_t p = r - g.skip, i = p / g.width, j = p % g.width;
    for (std::int64_t ky = 0; ky < 2; ++ky)
      for (std::int64_t kx = 0; kx < 2; ++kx) {
        const T* src = dy + ((b * 2 * g.height + 2 * i + ky) * 2 * g.width + 2 * j + kx) * C;
        for (std::int64_t c = 0; c < C; ++c) d[4 * c + 2 * ky + kx] = src[c];
      }
  }
}

// dbias[c] += the four kernel positions' column sums 4c .. 4c + 3 of a shuffle's input gradient.
template <CpuScalar T>
inline void fold_kernel_position_sums(const T* column_sums, T* dbias, std::int64_t C) {
  for (std::int64_t c = 0; c < C; ++c) {
    const T* s = column_sums + 4 * c;
    dbias[c] += ((s[0] + s[1]) + s[2]) + s[3];
  }
}

// x: g.rows() rows of C values (height, width even) -> y [B, h/2, w/2, C].
template <CpuScalar T>
inline void avg_pool_2x2_forward(const T* x, T* y, const MapGeometry& g, std::int64_t C) {
  const std::int64_t h = g.height / 2, w = g.width / 2;
#pragma omp parallel for schedule(static) if (g.batch * g.pixels() * C > 65536)
  for (std::int64_t bi = 0; bi < g.batch * h; ++bi) {
    const std::int64_t b = bi / h, i = bi % h;
    for (std::int64_t j = 0; j < w; ++j) {
      const T* top = x + (b * g.rows_per_sample() + g.skip + 2 * i * g.width + 2 * j) * C;
      const T* bottom = top + g.width * C;
      T* dst = y + (bi * w + j) * C;
      for (std::int64_t c = 0; c < C; ++c) dst[c] = T(0.25) * ((top[c] + top[C + c]) + (bottom[c] + bottom[C + c]));
    }
  }
}

// dy [B, h/2, w/2, C] -> dx: g.rows() rows of C values.
template <CpuScalar T>
inline void avg_pool_2x2_backward(const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
  const std::int64_t h = g.height / 2, w = g.width / 2;
#pragma omp parallel for schedule(static) if (g.rows() * C > 65536)
  for (std::int64_t row = 0; row < g.rows(); ++row) {
    T* d = dx + row * C;
    const std::int64_t r = row % g.rows_per_sample(), b = row / g.rows_per_sample();
    if (r < g.skip) {
      std::fill(d, d + C, T(0));
      continue;
    }
    const std::int64_t p = r - g.skip, i = p / g.width / 2, j = p % g.width / 2;
    const T* src = dy + ((b * h + i) * w + j) * C;
    for (std::int64_t c = 0; c < C; ++c) d[c] = T(0.25) * src[c];
  }
}

}  // namespace vitfreeze::cpu
