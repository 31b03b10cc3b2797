#pragma once
// Element types. The CPU backend computes in f32 or f64; bf16 and f16 are storage types for the
// CUDA backend and for weight files, so they are defined here with exact round-to-nearest-even
// conversions.
#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace vitfreeze {

enum class DType : std::uint8_t { f32, f64, bf16, f16, i64, i32, u8 };

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

constexpr std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f64:
    case DType::i64: return 8;
    case DType::f32:
    case DType::i32: return 4;
    case DType::bf16:
    case DType::f16: return 2;
    case DType::u8: return 1;
  }
  return 0;
}

// bfloat16: the upper half of an IEEE f32.
struct bf16 {
  std::uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) {
    std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a quiet NaN
      bits = static_cast<std::uint16_t>((u >> 16) | 0x40u);
      return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
    bits = static_cast<std::uint16_t>(u >> 16);
  }
  explicit operator float() const { return std::bit_cast<float>(std::uint32_t(bits) << 16); }
};

// IEEE binary16.
struct f16 {
  std::uint16_t bits = 0;
  f16() = default;
  explicit f16(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) { bits = static_cast<std::uint16_t>(sign | 0x7e00u); return; }
    if (abs >= 0x477ff000u) { bits = static_cast<std::uint16_t>(sign | 0x7c00u); return; }  // overflow
    if (abs < 0x38800000u) {  // subnormal or zero in f16: scale into the integer mantissa, round once
      const float magnitude = std::bit_cast<float>(abs) * 16777216.0f;  // 2^24
      const auto m = static_cast<std::uint32_t>(__builtin_nearbyintf(magnitude));
      bits = static_cast<std::uint16_t>(sign | m);
      return;
    }
    std::uint32_t v = abs - 0x38000000u;  // rebias exponent 127 -> 15
    v += 0xfffu + ((v >> 13) & 1u);
    bits = static_cast<std::uint16_t>(sign | (v >> 13));
  }
  explicit operator float() const {
    const std::uint32_t sign = std::uint32_t(bits & 0x8000u) << 16;
    const std::uint32_t exp = (bits >> 10) & 0x1fu;
    const std::uint32_t man = bits & 0x3ffu;
    if (exp == 0) {
      const float v = static_cast<float>(man) / 16777216.0f;
      return sign ? -v : v;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
  }
};

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::u8; };
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

// Types the CPU backend computes in.
template <class T>
concept CpuScalar = std::is_same_v<T, float> || std::is_same_v<T, double>;

}  // namespace vitfreeze
