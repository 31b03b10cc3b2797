#pragma once
// Pictures of MAE reconstructions: for each sample, three images in display space (0..1):
// the original, the masked input (removed patches grey), and the reconstruction (visible patches
// from the input, removed ones from the prediction). With norm-pix targets the prediction is in
// per-patch normalised units, so each removed patch is mapped back with that patch's own mean and
// standard deviation (what the target was normalised with).
#include <cmath>
#include <vector>

#include "vitfreeze/data/normalize.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/norm_pix.hpp"
#include "vitfreeze/mim/patchify.hpp"

namespace vitfreeze::mim {

// images [B, C, H, W] normalised by `norm`; prediction [B, L, P] (pixel-major patches); returns
// 3 * min(B, max_samples) images [C, H, W] in row order original, masked, reconstruction.
template <class T>
std::vector<Tensor<float>> reconstruction_panels(const Tensor<T>& images, const Tensor<T>& prediction,
                                                 const MaskSet& masks, int patch, bool norm_pix,
                                                 const data::Normalize& norm, int max_samples = 8) {
  const Tensor<T> patches = patchify(images, patch);
  expect_shape(prediction.shape(), patches.shape(), "reconstruction_panels prediction");
  const std::int64_t B = std::min<std::int64_t>(images.dim(0), max_samples), L = patches.dim(1), P = patches.dim(2);
  const std::int64_t C = images.dim(1);
  Tensor<T> masked = patches.clone(), recon = patches.clone();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t l = 0; l < L; ++l) {
      if (!masks.mask.at(b, l)) continue;
      const T* src = patches.data() + (b * L + l) * P;
      double mean = 0, var = 0;
      if (norm_pix) {
        for (std::int64_t i = 0; i < P; ++i) mean += src[i];
        mean /= double(P);
        for (std::int64_t i = 0; i < P; ++i) var += (src[i] - mean) * (src[i] - mean);
        var /= double(P - 1);  // unbiased, as the target
      }
      for (std::int64_t i = 0; i < P; ++i) {
        const std::int64_t k = (b * L + l) * P + i;
        const std::int64_t c = i % C;  // pixel-major: channel fastest
        masked[k] = T(-norm.mean[std::size_t(c) % norm.mean.size()] / norm.stddev[std::size_t(c) % norm.stddev.size()] +
                      0.5 / norm.stddev[std::size_t(c) % norm.stddev.size()]);  // grey 0.5 in display space
        recon[k] = norm_pix ? T(prediction[k] * std::sqrt(var + kNormPixEps) + mean) : prediction[k];
      }
    }
  const Tensor<T> views[3] = {images, unpatchify(masked, patch, images.dim(2) / patch, images.dim(3) / patch),
                              unpatchify(recon, patch, images.dim(2) / patch, images.dim(3) / patch)};
  std::vector<Tensor<float>> out;
  const std::int64_t per = images.numel() / images.dim(0);
  for (std::int64_t b = 0; b < B; ++b)
    for (const Tensor<T>& v : views) {
      Tensor<float> img(Shape{C, images.dim(2), images.dim(3)});
      for (std::int64_t i = 0; i < per; ++i) {
        const std::int64_t c = i / (images.dim(2) * images.dim(3));
        const double s = norm.stddev[std::size_t(c) % norm.stddev.size()], m = norm.mean[std::size_t(c) % norm.mean.size()];
        img[i] = float(std::clamp(double(v[b * per + i]) * s + m, 0.0, 1.0));
      }
      out.push_back(img);
    }
  return out;
}

}  // namespace vitfreeze::mim
