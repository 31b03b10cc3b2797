#pragma once
// How vitfreeze gets stb_image (PNG/JPEG/BMP decoding) while staying header-only:
//
//  * Default: this header compiles stb_image's implementation into each translation unit that
//    includes it, with STB_IMAGE_STATIC so every function has internal linkage. Any number of TUs
//    then link without duplicate symbols and the user does nothing. Only the PNG, JPEG and BMP
//    decoders are built, to keep the compile cost small.
//  * If <stb_image.h> was included before this header, that inclusion is used as it is (the
//    user then provides the implementation, as stb itself requires).
//  * Define VITFREEZE_STB_EXTERNAL to declare stb_image only and link the implementation that one
//    of your TUs compiles with STB_IMAGE_IMPLEMENTATION (one copy of the decoder instead of one per
//    TU).
//
// Do not define STB_IMAGE_IMPLEMENTATION yourself in a TU that includes this header by default:
// the implementation is already there.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#if !defined(STBI_INCLUDE_STB_IMAGE_H)
#if defined(VITFREEZE_STB_EXTERNAL)
#include <stb_image.h>
#else
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#if !defined(STBI_ONLY_PNG) && !defined(STBI_ONLY_JPEG) && !defined(STBI_ONLY_BMP)
#define VITFREEZE_STBI_ONLY_DEFINED
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#endif
#include <stb_image.h>
#undef STB_IMAGE_IMPLEMENTATION
#ifdef VITFREEZE_STBI_ONLY_DEFINED
#undef VITFREEZE_STBI_ONLY_DEFINED
#undef STBI_ONLY_PNG
#undef STBI_ONLY_JPEG
#undef STBI_ONLY_BMP
#endif
#pragma GCC diagnostic pop
#endif
#endif

namespace vitfreeze::data::detail {

// A decoded image, interleaved HWC as stb returns it.
struct DecodedImage {
  std::vector<std::uint8_t> hwc;
  int height = 0;
  int width = 0;
  int channels = 0;
};

// Decodes `file` to `channels` (1 grey or 3 RGB; stb converts). Returns false and sets `reason` when
// the file cannot be read or decoded. `out` keeps its capacity between calls.
inline bool decode_image(const std::filesystem::path& file, int channels, DecodedImage& out, std::string& reason) {
  int w = 0, h = 0, n = 0;
  stbi_uc* p = stbi_load(file.string().c_str(), &w, &h, &n, channels);
  if (!p) {
    const char* why = stbi_failure_reason();
    reason = why ? why : "unknown stb_image failure";
    return false;
  }
  out.height = h;
  out.width = w;
  out.channels = channels;
  out.hwc.assign(p, p + std::size_t(w) * std::size_t(h) * std::size_t(channels));
  stbi_image_free(p);
  return true;
}

}  // namespace vitfreeze::data::detail
