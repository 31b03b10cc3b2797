#pragma once
// The target kernels a device backend has (mim/targets.hpp): a reconstruction target that one of
// them computes says so as `static constexpr ... device_kernel`, so a backend whose images are not
// on the host runs it without knowing the target's type (backend/ does not include mim/). A target
// without one runs on host backends only.
namespace vitfreeze {

// Each cell's pixels, pixel-major (u, v, c); with normalize, each cell to mean 0 and unit unbiased
// variance + eps.
struct CellPixelsKernel {
  bool normalize = true;
  double eps = 1e-6;
};

// Histograms of `bins` orientations per channel and cell, L2-normalised (backend/cpu/hog.hpp).
struct HogKernel {
  int bins = 9;
};

}  // namespace vitfreeze
