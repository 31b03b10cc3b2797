#pragma once
// MAE reconstruction targets straight from the images: pixel-major patches, optionally normalised
// per patch as mim::normalize_patches_in_place (mean, unbiased variance + eps), written as rows
// 1..L of a [B, 1 + L, P] buffer whose row 0 (the cls position) is zero. The decoder's prediction
// keeps its cls row too, so prediction and target line up row for row and the loss weights the cls
// rows with 0: no slicing copies on either side.
#include <cstdint>

#include "vitfreeze/backend/cuda/patchify.cuh"

namespace vitfreeze::cuda {

namespace kernels {
template <DeviceScalar T>
__global__ void patch_targets(const float* images, T* target, PatchIndex index, bool normalize, float eps) {
  const std::int64_t row = blockIdx.x;  // b * (L + 1) + t
  const std::int64_t L = index.patches, P = index.patch_dim;
  const std::int64_t t = row % (L + 1), b = row / (L + 1);
  T* out = target + row * P;
  if (t == 0) {
    for (std::int64_t k = threadIdx.x; k < P; k += blockDim.x) out[k] = from_float<T>(0.0f);
    return;
  }
  const std::int64_t first = (b * L + t - 1) * P;
  float mean = 0.0f, inv_std = 1.0f;
  if (normalize) {  // two passes (mean, then centred squares), as the CPU does in double
    float s = 0.0f;
    for (std::int64_t k = threadIdx.x; k < P; k += blockDim.x) s += images[index.image_index(first + k)];
    mean = detail::block_sum(s) / static_cast<float>(P);
    float q = 0.0f;
    for (std::int64_t k = threadIdx.x; k < P; k += blockDim.x) {
      const float c = images[index.image_index(first + k)] - mean;
      q += c * c;
    }
    inv_std = rsqrtf(detail::block_sum(q) / static_cast<float>(P - 1) + eps);
  }
  for (std::int64_t k = threadIdx.x; k < P; k += blockDim.x)
    out[k] = from_float<T>((images[index.image_index(first + k)] - mean) * inv_std);
}
}  // namespace kernels

// images [B, C, H, W] fp32 -> target [B, 1 + L, P] (pixel-major patches, row 0 of each sample zero).
template <DeviceScalar T>
void patch_targets(CudaContext& ctx, const float* images, T* target, const PatchGeometry& g, bool normalize,
                   double eps = 1e-6) {
  const kernels::PatchIndex index = detail::patch_index(g, PatchLayout::pixel_major);
  if (normalize && index.patch_dim < 2) throw ShapeError("cuda::patch_targets: normalising needs >= 2 values per patch");
  const std::int64_t rows = g.batch * (index.patches + 1);
  if (rows <= 0) return;
  kernels::patch_targets<T><<<static_cast<unsigned>(rows), detail::kBlock, 0, ctx.stream()>>>(
      images, target, index, normalize, static_cast<float>(eps));
  check_launch("patch_targets");
}

}  // namespace vitfreeze::cuda
