#pragma once
// Philox-4x32-10 counter-based random numbers. A draw is a pure function of (key, counter), so a
// mask, crop or shuffle keyed by (seed, epoch, step, sample, purpose) is the same on every backend,
// on any number of ranks and after a resume.
#include <array>
#include <cstdint>

namespace vitfreeze {

struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  static constexpr Counter generate(Counter c, Key k) {
    for (int round = 0; round < 10; ++round) {
      if (round) {
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
      }
      const std::uint64_t p0 = std::uint64_t(0xD2511F53u) * c[0];
      const std::uint64_t p1 = std::uint64_t(0xCD9E8D57u) * c[2];
      c = {std::uint32_t(p1 >> 32) ^ c[1] ^ k[0], std::uint32_t(p1), std::uint32_t(p0 >> 32) ^ c[3] ^ k[1],
           std::uint32_t(p0)};
    }
    return c;
  }
};

// What a stream of random numbers is for; part of the counter so streams never overlap.
enum class RngPurpose : std::uint32_t {
  init = 1,
  mask = 2,
  shuffle = 3,
  crop = 4,
  flip = 5,
  window = 6,
  mixup = 7,
  drop_path = 8,
  rand_augment = 9,
  color_jitter = 10,
  random_erasing = 11,
  test = 99,
};

// A stream of uniform numbers identified by (seed, purpose, a, b): a and b are free coordinates
// such as (epoch, step) or (step, sample). The i-th draw of the stream is Philox(counter(i)).
class RandomStream {
 public:
  constexpr RandomStream(std::uint64_t seed, RngPurpose purpose, std::uint64_t a = 0, std::uint32_t b = 0)
      : key_{std::uint32_t(seed), std::uint32_t(seed >> 32)},
        base_{std::uint32_t(purpose) << 24 ^ b, std::uint32_t(a), std::uint32_t(a >> 32), 0} {}

  // Next 32 random bits.
  constexpr std::uint32_t next_u32() {
    if (lane_ == 4) refill();
    return block_[lane_++];
  }
  // Uniform in [0, 1) with 24 bits (exactly representable as float).
  constexpr float uniform_float() { return float(next_u32() >> 8) * (1.0f / 16777216.0f); }
  // Uniform in [0, 1) with 53 bits.
  constexpr double uniform() {
    const std::uint64_t hi = next_u32() >> 5, lo = next_u32() >> 6;
    return double(hi * 67108864u + lo) * (1.0 / 9007199254740992.0);
  }
  // Uniform integer in [0, n), unbiased (rejection sampling).
  constexpr std::uint32_t below(std::uint32_t n) {
    if (n <= 1) return 0;
    const std::uint32_t limit = std::uint32_t(-n) % n;  // 2^32 mod n
    for (;;) {
      const std::uint64_t m = std::uint64_t(next_u32()) * n;
      if (std::uint32_t(m) >= limit) return std::uint32_t(m >> 32);
    }
  }
  // Standard normal (Box-Muller on two 53-bit uniforms).
  double normal();

  std::uint64_t draws() const { return index_ * 4 - (4 - lane_); }

 private:
  constexpr void refill() {
    Philox4x32::Counter c = base_;
    c[3] = std::uint32_t(index_);  // 2^32 blocks (16 Gi draws) per stream
    block_ = Philox4x32::generate(c, key_);
    ++index_;
    lane_ = 0;
  }

  Philox4x32::Key key_;
  Philox4x32::Counter base_;
  Philox4x32::Counter block_{};
  std::uint64_t index_ = 0;
  int lane_ = 4;
};

}  // namespace vitfreeze

#include <cmath>
inline double vitfreeze::RandomStream::normal() {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
