#pragma once
// image_folder(dir): one sub-folder per class (class id = rank of the folder name in sorted order,
// as torchvision's ImageFolder), PNG/JPEG/BMP files inside, read in sorted order.
//
// All images are stored at one size (Dataset keeps a single contiguous array, so the loader never
// allocates per sample). Either every image already has the first image's size, or the caller gives
// height/width and every image is resized to it here, with Pillow-style antialiased resampling.
// Resizing at load time costs a little crop quality for large sources (RandomResizedCrop then
// samples from the resized image), which is acceptable for the small datasets this library targets.
//
// Errors: an undecodable image (or one of the wrong size) is a DataError naming the file, unless
// skip_bad is set; then it is left out and listed in Dataset::skipped. Files whose extension is not
// in `extensions` are never read and are listed in Dataset::skipped as well, so nothing vanishes
// without a trace.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "vitfreeze/data/dataset.hpp"
#include "vitfreeze/data/resample.hpp"
#include "vitfreeze/data/stb_image.hpp"

namespace vitfreeze::data {

struct ImageFolderOptions {
  int channels = 3;  // 1 (grey) or 3 (RGB); other layouts are converted by stb_image
  int height = 0;    // 0 with width 0: keep sizes (all must match); else resize to height x width
  int width = 0;
  Interpolation resize_interpolation = Interpolation::bilinear;
  bool skip_bad = false;
  std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp"};  // case-insensitive
};

namespace detail {

inline std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Directory entries in name order (the order decides class ids and sample indices).
inline std::vector<std::filesystem::path> sorted_entries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> v;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    v.push_back(it->path());
  if (ec) throw DataError(dir.string(), 0, "cannot list directory: " + ec.message());
  std::sort(v.begin(), v.end());
  return v;
}

inline bool is_directory(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}

}  // namespace detail

inline Dataset image_folder(const std::filesystem::path& dir, const ImageFolderOptions& options = {}) {
  if (options.channels != 1 && options.channels != 3)
    throw ConfigError("image_folder: channels must be 1 or 3");
  if ((options.height > 0) != (options.width > 0) || options.height < 0 || options.width < 0 ||
      options.resize_interpolation == Interpolation::random)
    throw ConfigError("image_folder: give both height and width (or neither) and a fixed interpolation");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw DataError(dir.string(), 0, "not a directory");

  Dataset d;
  d.name = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
  d.channels = options.channels;
  d.height = options.height;
  d.width = options.width;
  std::vector<std::string> extensions;
  for (const auto& e : options.extensions) extensions.push_back(detail::lower(e));

  struct Item {
    std::filesystem::path file;
    std::int32_t label;
  };
  std::vector<Item> items;
  for (const auto& entry : detail::sorted_entries(dir)) {
    if (!detail::is_directory(entry)) {
      d.skipped.push_back({entry.string(), "not inside a class folder"});
      continue;
    }
    const auto label = std::int32_t(d.class_names.size());
    d.class_names.push_back(entry.filename().string());
    for (const auto& file : detail::sorted_entries(entry)) {
      const std::string ext = detail::lower(file.extension().string());
      if (detail::is_directory(file) || std::find(extensions.begin(), extensions.end(), ext) == extensions.end())
        d.skipped.push_back({file.string(), "not an image file with one of ImageFolderOptions::extensions"});
      else
        items.push_back({file, label});
    }
  }
  d.num_classes = int(d.class_names.size());
  if (items.empty()) throw DataError(dir.string(), 0, "no image files in class sub-folders");

  detail::DecodedImage decoded;
  std::vector<std::uint8_t> chw;
  std::vector<float> resized;
  Resampler resampler;
  std::string reason;
  for (const Item& item : items) {
    auto reject = [&](const std::string& why) {
      if (!options.skip_bad) throw DataError(item.file.string(), 0, why);
      d.skipped.push_back({item.file.string(), why});
    };
    if (!detail::decode_image(item.file, d.channels, decoded, reason)) {
      reject("cannot decode image (" + reason + "); expected PNG, JPEG or BMP");
      continue;
    }
    if (d.height == 0) {  // first image fixes the size
      d.height = decoded.height;
      d.width = decoded.width;
      d.pixels.reserve(items.size() * d.image_size());
    }
    const bool resize = decoded.height != d.height || decoded.width != d.width;
    if (resize && options.height == 0) {
      reject("image is " + std::to_string(decoded.width) + "x" + std::to_string(decoded.height) +
             ", expected the first image's " + std::to_string(d.width) + "x" + std::to_string(d.height) +
             " (set ImageFolderOptions::height/width to resize)");
      continue;
    }
    // stb gives HWC; the dataset stores CHW.
    const std::size_t plane = std::size_t(decoded.height) * std::size_t(decoded.width);
    chw.resize(plane * std::size_t(d.channels));
    const std::size_t channels = std::size_t(d.channels);
    for (std::size_t p = 0; p < plane; ++p)
      for (std::size_t c = 0; c < channels; ++c) chw[c * plane + p] = decoded.hwc[p * channels + c];
    if (resize) {
      const ImageView src{chw.data(), d.channels, decoded.height, decoded.width};
      resized.resize(d.image_size());
      resampler.run(src, {0.0, 0.0, double(src.height), double(src.width)}, {0, 0, src.height, src.width},
                    options.resize_interpolation, resized.data(), d.height, d.width);
      for (float v : resized) d.pixels.push_back(std::uint8_t(std::lround(v)));  // already clamped to 0..255
    } else {
      d.pixels.insert(d.pixels.end(), chw.begin(), chw.end());
    }
    d.labels.push_back(item.label);
    ++d.count;
  }
  if (d.count == 0)
    throw DataError(dir.string(), 0, "every image was skipped; the last: " + d.skipped.back().file + ": " +
                                         d.skipped.back().reason);
  return d;
}

}  // namespace vitfreeze::data
