// This machine's FP32 ceilings, measured in the same run as the step benchmarks: the FMA peak (every
// thread running independent fused multiply-add chains on the widest vectors the build targets) and
// the GEMM throughput of the backend's GEMM (oneDNN or Eigen, whichever the build has) on the shapes
// of the ViT-Ti steps of bench/step_bench.cpp, each the median of repeated calls.
//   cpu_ceiling [repeats=20]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/core/parallel.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// GFLOP/s of `iterations` rounds of 12 independent FMA chains per thread.
double fma_peak(long iterations) {
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int kLanes = 16;
  auto fma = [](V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); };
  auto splat = [](float x) { return _mm512_set1_ps(x); };
  auto sum = [](V v) { return _mm512_reduce_add_ps(v); };
#elif defined(__AVX2__) && defined(__FMA__)
  using V = __m256;
  constexpr int kLanes = 8;
  auto fma = [](V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); };
  auto splat = [](float x) { return _mm256_set1_ps(x); };
  auto sum = [](V v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    float s = 0;
    for (float x : t) s += x;
    return s;
  };
#else
  std::fprintf(stderr, "cpu_ceiling: built without AVX2/FMA or AVX-512; no FMA peak\n");
  return 0.0;
#endif
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  constexpr int kChains = 12;
  double checksum = 0;
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : checksum)
  {
    V acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = splat(0.001f * float(c + omp_get_thread_num()));
    const V a = splat(0.999999f), b = splat(1e-7f);
    for (long i = 0; i < iterations; ++i)
      for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], a, b);
    for (int c = 0; c < kChains; ++c) checksum += sum(acc[c]);
  }
  const double s = seconds_since(start);
  if (checksum == 12345.678) std::puts("");  // keeps the chains alive
  return 2.0 * kLanes * kChains * double(iterations) * vitfreeze::cpu::thread_count() / s / 1e9;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 20;
  std::printf("threads %d, GEMM library %s\n", vitfreeze::cpu::thread_count(), vitfreeze::cpu::gemm_library());
  std::vector<double> peaks;
  for (int r = 0; r < 5; ++r) peaks.push_back(fma_peak(20'000'000));
  std::sort(peaks.begin(), peaks.end());
  std::printf("fma peak  %8.1f GFLOP/s (best of 5: %.1f)\n", peaks[2], peaks.back());

  struct Shape {
    bool ta, tb;
    long M, N, K;
    const char* what;
  };
  // Rows: 128 images x 17 (MAE encoder, 16 visible + cls) or x 65 (MAE decoder, 64 + cls).
  const Shape shapes[] = {{false, true, 2176, 576, 192, "enc qkv  x W^T"},  {false, true, 2176, 768, 192, "enc fc1  x W^T"},
                          {false, true, 2176, 192, 768, "enc fc2  x W^T"},  {false, false, 2176, 192, 768, "enc fc1  dX"},
                          {true, false, 768, 192, 2176, "enc fc1  dW"},     {false, true, 8320, 512, 128, "dec fc1  x W^T"},
                          {true, false, 128, 512, 8320, "dec fc2  dW"}};
  std::vector<float> A(8320 * 2176), B(8320 * 768), C(8320 * 2176);
  for (std::size_t i = 0; i < A.size(); ++i) A[i] = float((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  for (std::size_t i = 0; i < B.size(); ++i) B[i] = float((i * 2246822519u) % 1000) * 1e-3f - 0.5f;
  for (const Shape& s : shapes) {
    const long lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<double> t;
    for (int r = 0; r < repeats + 2; ++r) {
      const auto start = std::chrono::steady_clock::now();
      vitfreeze::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.N);
      if (r >= 2) t.push_back(seconds_since(start));
    }
    std::sort(t.begin(), t.end());
    const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
    std::printf("gemm %-16s %5ld x %4ld x %4ld  %8.1f GFLOP/s (median of %d)\n", s.what, s.M, s.N, s.K,
                flops / t[t.size() / 2] / 1e9, repeats);
  }
  return 0;
}
