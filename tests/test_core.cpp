#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "vitfreeze/core/arena.hpp"
#include "vitfreeze/core/dtype.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/core/tensor.hpp"

using namespace vitfreeze;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  using C = Philox4x32::Counter;
  CHECK(Philox4x32::generate(C{0, 0, 0, 0}, {0, 0}) == C{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(Philox4x32::generate(C{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        C{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(Philox4x32::generate(C{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        C{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

// ---- bf16 / f16 conversions against IEEE 754 bit patterns ----------------------------------------
// Expected bits are the published encodings (binary16: 65504 = 0x7BFF, 2^-24 = 0x0001, pi = 0x4248;
// bfloat16: the top half of binary32, pi = 0x4049), not values produced by the conversions tested.
namespace {
float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }
std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }

struct Encoding {
  float f32;
  std::uint16_t bits;  // the expected 16-bit encoding
  const char* what;
};
template <class Half>
void check_encodings(std::initializer_list<Encoding> cases) {
  for (const Encoding& c : cases) {
    CAPTURE(c.what);
    CHECK(Half(c.f32).bits == c.bits);
  }
}
// NaN stays NaN (all exponent bits set, mantissa nonzero), including signalling NaNs whose payload
// lies only in the bits the conversion drops.
template <class Half>
void check_nan_stays_nan(std::uint16_t exponent, std::initializer_list<std::uint32_t> nans) {
  for (std::uint32_t nan : nans) {
    CAPTURE(nan);
    const std::uint16_t h = Half(from_bits(nan)).bits;
    CHECK((h & exponent) == exponent);
    CHECK((h & 0x7FFF & ~exponent) != 0);
  }
}
}  // namespace

TEST_CASE("bf16 from f32: known encodings, ties to even, overflow, subnormals") {
  check_encodings<bf16>({
      {from_bits(0x3F800000), 0x3F80, "1.0"},
      {from_bits(0xC0000000), 0xC000, "-2.0"},
      {from_bits(0x00000000), 0x0000, "+0"},
      {from_bits(0x80000000), 0x8000, "-0 keeps its sign"},
      {from_bits(0x40490FDB), 0x4049, "pi rounds down to 3.140625"},
      {from_bits(0x3EAAAAAB), 0x3EAB, "1/3 rounds up to 0.333984375"},
      {from_bits(0x3F808000), 0x3F80, "tie between 0x3F80 and 0x3F81 goes to the even 0x3F80"},
      {from_bits(0x3F818000), 0x3F82, "tie between 0x3F81 and 0x3F82 goes to the even 0x3F82"},
      {from_bits(0x3F808001), 0x3F81, "just above the tie rounds up"},
      {from_bits(0x7F7F7FFF), 0x7F7F, "just below max + half ulp stays the largest finite 0x7F7F"},
      {from_bits(0x7F7FFFFF), 0x7F80, "FLT_MAX overflows to +inf"},
      {from_bits(0xFF7FFFFF), 0xFF80, "-FLT_MAX overflows to -inf"},
      {from_bits(0x7F800000), 0x7F80, "+inf"},
      {from_bits(0xFF800000), 0xFF80, "-inf"},
      {from_bits(0x00010000), 0x0001, "the smallest bf16 subnormal is exact"},
      {from_bits(0x00008000), 0x0000, "half the smallest subnormal is a tie, to even: +0"},
      {from_bits(0x00018000), 0x0002, "1.5 smallest subnormals is a tie, to even: 2"},
      {from_bits(0x00000001), 0x0000, "the smallest f32 subnormal underflows to +0"},
  });
  check_nan_stays_nan<bf16>(0x7F80, {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7F80FFFFu});
}

TEST_CASE("bf16 to f32 is the top half of the f32 encoding") {
  CHECK(bits_of(float(bf16{})) == 0u);
  for (std::uint16_t b : {std::uint16_t(0x3F80), std::uint16_t(0x7F7F), std::uint16_t(0x0001), std::uint16_t(0x8001),
                          std::uint16_t(0xFF80), std::uint16_t(0x4049)}) {
    bf16 x;
    x.bits = b;
    CAPTURE(b);
    CHECK(bits_of(float(x)) == std::uint32_t(b) << 16);
  }
}

TEST_CASE("f16 from f32: known encodings, ties to even, overflow, subnormals") {
  const float two_m24 = 0x1p-24f;  // the smallest f16 subnormal
  check_encodings<f16>({
      {1.0f, 0x3C00, "1.0"},
      {-2.0f, 0xC000, "-2.0"},
      {0.5f, 0x3800, "0.5"},
      {-0.0f, 0x8000, "-0 keeps its sign"},
      {65504.0f, 0x7BFF, "65504, the largest finite"},
      {65519.0f, 0x7BFF, "65519 is below max + half ulp (65520)"},
      {65520.0f, 0x7C00, "65520, the tie above max, goes to the even +inf"},
      {1e6f, 0x7C00, "1e6 overflows to +inf"},
      {-1e6f, 0xFC00, "-1e6 overflows to -inf"},
      {INFINITY, 0x7C00, "+inf"},
      {0x1p-14f, 0x0400, "2^-14, the smallest normal"},
      {two_m24, 0x0001, "2^-24, the smallest subnormal"},
      {1023 * two_m24, 0x03FF, "the largest subnormal"},
      {-two_m24, 0x8001, "-2^-24"},
      {0.5f * two_m24, 0x0000, "2^-25 is a tie between 0 and 2^-24, to even: +0"},
      {1.5f * two_m24, 0x0002, "1.5 * 2^-24 is a tie between 1 and 2 subnormals, to even: 2"},
      {0x1p-26f, 0x0000, "2^-26 underflows to +0"},
      {3.14159265f, 0x4248, "pi rounds to 3.140625"},
      {1.0f / 3.0f, 0x3555, "1/3"},
      {1.0f + 0x1p-11f, 0x3C00, "tie between 0x3C00 and 0x3C01 goes to the even 0x3C00"},
      {1.0f + 3 * 0x1p-11f, 0x3C02, "tie between 0x3C01 and 0x3C02 goes to the even 0x3C02"},
      {2049.0f, 0x6800, "2049 is a tie between 2048 and 2050, to even: 2048"},
      {2051.0f, 0x6802, "2051 is a tie between 2050 and 2052, to even: 2052"},
  });
  check_nan_stays_nan<f16>(0x7C00, {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7F801FFFu});
}

TEST_CASE("f16 to f32: known values, and every non-NaN f16 survives the round trip") {
  auto value = [](std::uint16_t h) {
    f16 x;
    x.bits = h;
    return float(x);
  };
  CHECK(value(0x7BFF) == 65504.0f);
  CHECK(value(0x0001) == 0x1p-24f);
  CHECK(value(0x03FF) == 1023 * 0x1p-24f);
  CHECK(value(0x8001) == -0x1p-24f);
  CHECK(value(0x0400) == 0x1p-14f);
  CHECK(value(0x3555) == 0.333251953125f);
  CHECK(value(0x7C00) == INFINITY);
  CHECK(value(0xFC00) == -INFINITY);
  CHECK(std::isnan(value(0x7E00)));
  CHECK(bits_of(value(0x8000)) == 0x80000000u);
  int mismatches = 0;
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0) continue;  // NaN payloads need not survive
    mismatches += f16(value(std::uint16_t(h))).bits != h;
  }
  CHECK(mismatches == 0);
}
