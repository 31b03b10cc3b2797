#pragma once
// Deterministic column reductions of row-major [rows, cols] data: out_k[c] += sum_r f_k(r, c) for
// K outputs per column (K = 1: column sums for bias gradients; K = 2: LayerNorm dgamma and dbeta).
//
// Gradients of biases and LayerNorm parameters reduce tens of thousands of rows into a few hundred
// columns. One block per column tile alone gives cols / 32 blocks (24 for D = 768), far too few for
// the memory system, so the reduction runs in two stages:
//   1. grid (column tiles x row chunks): each block sums one chunk of rows for 32 * W columns, every
//      thread loading W adjacent columns per row (16-byte loads when aligned), 8 row groups per block
//      combined in shared memory; the fp32 result goes to partial[chunk][k][c] in scratch;
//   2. per column, the chunk partials are summed (8 strided groups, then the groups in fixed order)
//      and added to out_k.
// Everything is in fp32 with a fixed summation order and no atomics. The chunk count depends only on
// the shape (not on the device), so the result is bitwise reproducible run to run and across GPUs.
// With a single chunk, stage 1 adds into out directly and stage 2 is skipped.
#include <algorithm>
#include <cstdint>
#include <string>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace detail {
inline constexpr int kColumnLanes = 32, kColumnRowGroups = 8;  // block = 32 x 8 = kBlock threads
// Stage-1 blocks aimed at: ~4 per SM on a 132-SM H100 (a constant, so results do not depend on the
// device). Each chunk keeps at least kMinChunkRows rows so partials stay small next to the input.
inline constexpr std::int64_t kColumnTargetBlocks = 528, kMinChunkRows = 64;

template <int K>
struct ColumnOutputs {
  float* out[K];  // a null entry is skipped
  // out[k] without dynamic indexing of the kernel parameter (that would copy it to the stack).
  __device__ __forceinline__ float* operator[](int k) const {
    float* p = out[0];
#pragma unroll
    for (int i = 1; i < K; ++i) p = k == i ? out[i] : p;
    return p;
  }
};

// Source: struct with `static constexpr int kOut` and
//   template <int W> __device__ void load(std::int64_t r, std::int64_t c, float (&v)[kOut][W]) const
// which adds (+=) the contributions of row r, columns [c, c + W) (c is a multiple of W; W == kVec
// only when the source checked its alignment).
template <class Source, int W>
__global__ void __launch_bounds__(kBlock) column_partials(Source src, std::int64_t rows, std::int64_t cols,
                                                          std::int64_t chunk_rows, float* partial,
                                                          ColumnOutputs<Source::kOut> direct) {
  constexpr int K = Source::kOut, kTile = kColumnLanes * W;
  __shared__ float shared[kColumnRowGroups][K][kTile];
  const std::int64_t tile0 = std::int64_t(blockIdx.x) * kTile, c = tile0 + std::int64_t(threadIdx.x) * W;
  const std::int64_t begin = std::int64_t(blockIdx.y) * chunk_rows, end = std::min(rows, begin + chunk_rows);
  float acc[K][W] = {};
  if (c < cols)
#pragma unroll 4  // several rows' loads in flight per thread: the loop is latency bound otherwise
    for (std::int64_t r = begin + threadIdx.y; r < end; r += kColumnRowGroups) src.template load<W>(r, c, acc);
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int w = 0; w < W; ++w) shared[threadIdx.y][k][threadIdx.x * W + w] = acc[k][w];
  __syncthreads();
  // All kBlock threads combine the row groups, one (k, column) pair at a time, groups in fixed order.
  const int tid = threadIdx.y * kColumnLanes + threadIdx.x;
  for (int j = tid; j < K * kTile; j += kBlock) {
    const int k = j / kTile, t = j % kTile;
    const std::int64_t col = tile0 + t;
    if (col >= cols) continue;
    float s = 0.0f;
#pragma unroll
    for (int g = 0; g < kColumnRowGroups; ++g) s += shared[g][k][t];
    if (partial) {
      partial[(std::int64_t(blockIdx.y) * K + k) * cols + col] = s;
    } else if (float* out = direct[k]) {
      out[col] += s;
    }
  }
}

// out_k[c] += sum over chunks of partial[chunk][k][c]; block = 32 columns (of the K * cols flattened
// ones) x 8 chunk groups.
template <int K>
__global__ void __launch_bounds__(kBlock) column_finish(const float* partial, std::int64_t chunks, std::int64_t cols,
                                                        ColumnOutputs<K> outs) {
  __shared__ float shared[kColumnRowGroups][kColumnLanes];
  const std::int64_t j = std::int64_t(blockIdx.x) * kColumnLanes + threadIdx.x, n = K * cols;
  float s = 0.0f;
  if (j < n)
    for (std::int64_t ch = threadIdx.y; ch < chunks; ch += kColumnRowGroups) s += partial[ch * n + j];
  shared[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < n) {
    float total = 0.0f;
#pragma unroll
    for (int g = 0; g < kColumnRowGroups; ++g) total += shared[g][threadIdx.x];
    if (float* out = outs[static_cast<int>(j / cols)]) out[j % cols] += total;
  }
}

// Column sums of x.
template <DeviceScalar T>
struct ColumnSumSource {
  static constexpr int kOut = 1;
  const T* x;
  std::int64_t cols;
  template <int W>
  __device__ __forceinline__ void load(std::int64_t r, std::int64_t c, float (&acc)[1][W]) const {
    float v[W];
    load_vec<T, W>(x + r * cols + c, v);
#pragma unroll
    for (int w = 0; w < W; ++w) acc[0][w] += v[w];
  }
};

// Runs both stages; `vectorised` says the source may use 16-byte loads of T (cols % kVec<T> == 0 and
// all its pointers aligned).
template <DeviceScalar T, class Source>
void column_reduce(CudaContext& ctx, const Source& src, std::int64_t rows, std::int64_t cols, bool vectorised,
                   ColumnOutputs<Source::kOut> outs, const char* name) {
  constexpr int K = Source::kOut;
  if (rows <= 0 || cols <= 0) return;
  const int W = vectorised ? kVec<T> : 1;
  const std::int64_t tile = std::int64_t(kColumnLanes) * W, tiles = (cols + tile - 1) / tile;
  const std::int64_t max_chunks = std::max<std::int64_t>(1, rows / kMinChunkRows);
  std::int64_t chunks = std::clamp<std::int64_t>((kColumnTargetBlocks + tiles - 1) / tiles, 1, max_chunks);
  std::int64_t chunk_rows = (rows + chunks - 1) / chunks;
  chunk_rows = (chunk_rows + kColumnRowGroups - 1) / kColumnRowGroups * kColumnRowGroups;  // whole row groups
  chunks = (rows + chunk_rows - 1) / chunk_rows;
  if (chunks > 65535) throw ShapeError(std::string(name) + ": too many rows");

  DeviceBuffer scratch;  // returned to the cache after the launches: later users run after them on this stream
  float* partial = nullptr;
  if (chunks > 1) {
    scratch = ctx.allocator().allocate(sizeof(float) * static_cast<std::size_t>(chunks * K * cols));
    partial = scratch.as<float>();
  }
  const dim3 block(kColumnLanes, kColumnRowGroups), grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
  if (W == 1)
    column_partials<Source, 1><<<grid, block, 0, ctx.stream()>>>(src, rows, cols, chunk_rows, partial, outs);
  else
    column_partials<Source, kVec<T>><<<grid, block, 0, ctx.stream()>>>(src, rows, cols, chunk_rows, partial, outs);
  check_launch(name);
  if (chunks > 1) {
    const auto finish_blocks = static_cast<unsigned>((K * cols + kColumnLanes - 1) / kColumnLanes);
    column_finish<K><<<finish_blocks, block, 0, ctx.stream()>>>(partial, chunks, cols, outs);
    check_launch(name);
  }
}
}  // namespace detail

// Column sums of a row-major matrix, as cpu::add_column_sums: out[c] += sum_r x[r, c] (fp32 out).
template <DeviceScalar T>
void add_column_sums(CudaContext& ctx, const T* x, std::int64_t rows, std::int64_t cols, float* out) {
  const bool vec = cols % kVec<T> == 0 && all_aligned16(x);
  detail::column_reduce<T>(ctx, detail::ColumnSumSource<T>{x, cols}, rows, cols, vec, detail::ColumnOutputs<1>{{out}},
                           "add_column_sums");
}

}  // namespace vitfreeze::cuda
