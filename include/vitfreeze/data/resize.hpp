#pragma once
// A whole data set at another square size (the "56x56 upsampled Fashion-MNIST" of the resolution
// experiments): every image resampled as Pillow's Image.resize does (data/resample.hpp) and rounded
// to uint8 as Pillow stores it, so the loader and its augmentations then see an ordinary data set.
#include <cmath>

#include "vitfreeze/data/dataset.hpp"
#include "vitfreeze/data/resample.hpp"

namespace vitfreeze::data {

inline Dataset resized(const Dataset& d, int side, Interpolation m = Interpolation::bicubic) {
  if (side <= 0 || m == Interpolation::random) throw ConfigError("resized: need a positive side and a fixed interpolation");
  Dataset out = d;
  out.height = out.width = side;
  out.pixels.assign(std::size_t(d.count) * out.image_size(), 0);
  std::vector<float> image(out.image_size());
  Resampler r;
  for (std::int64_t i = 0; i < d.count; ++i) {
    r.run(ImageView{d.image(i).data(), d.channels, d.height, d.width}, CropBox{0, 0, double(d.height), double(d.width)},
          PixelRect{0, 0, d.height, d.width}, m, image.data(), side, side);
    std::uint8_t* dst = out.image(i).data();
    for (std::size_t k = 0; k < image.size(); ++k) dst[k] = std::uint8_t(std::lround(image[k]));  // 0..255 already
  }
  return out;
}

}  // namespace vitfreeze::data
