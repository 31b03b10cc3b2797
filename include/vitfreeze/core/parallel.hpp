#pragma once
// The process's one thread pool is OpenMP's: Eigen's GEMM and our element-wise kernels share it,
// so two pools never spin against each other on a small machine.
#include <omp.h>

namespace vitfreeze::cpu {

inline int thread_count() { return omp_get_max_threads(); }
inline void set_thread_count(int n) {
  if (n > 0) omp_set_num_threads(n);
}
inline int thread_index() { return omp_get_thread_num(); }

}  // namespace vitfreeze::cpu
