#pragma once
// VITFREEZE_HOST_DEVICE marks a small function that host code and CUDA kernels both call (one
// definition of a rule the CPU tests check and the GPU runs); it is empty for plain C++ compilers.
#if defined(__CUDACC__)
#define VITFREEZE_HOST_DEVICE __host__ __device__
#else
#define VITFREEZE_HOST_DEVICE
#endif
