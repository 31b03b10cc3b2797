#pragma once
// Shape of a dense row-major tensor: up to kMaxRank extents, stored inline (no allocation).
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze {

class Shape {
 public:
  static constexpr int kMaxRank = 6;

  constexpr Shape() = default;
  constexpr Shape(std::initializer_list<std::int64_t> extents) {
    if (extents.size() > kMaxRank) throw ShapeError("Shape: rank above " + std::to_string(kMaxRank));
    for (std::int64_t e : extents) {
      if (e < 0) throw ShapeError("Shape: negative extent");
      extents_[rank_++] = e;
    }
  }

  constexpr int rank() const { return rank_; }
  constexpr std::int64_t operator[](int i) const { return extents_[i < 0 ? i + rank_ : i]; }
  constexpr std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= extents_[i];
    return n;
  }
  // Product of all extents but the last: the row count when the tensor is seen as a matrix.
  constexpr std::int64_t rows() const { return rank_ == 0 ? 1 : numel() / extents_[rank_ - 1]; }
  constexpr std::int64_t cols() const { return rank_ == 0 ? 1 : extents_[rank_ - 1]; }

  constexpr Shape with_last(std::int64_t last) const {
    Shape s = *this;
    s.extents_[rank_ - 1] = last;
    return s;
  }
  constexpr Shape with_first(std::int64_t first) const {
    Shape s = *this;
    s.extents_[0] = first;
    return s;
  }

  friend constexpr bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.extents_[i] != b.extents_[i]) return false;
    return true;
  }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(extents_[i]);
    return s + "]";
  }

 private:
  std::array<std::int64_t, kMaxRank> extents_{};
  int rank_ = 0;
};

// Throws a ShapeError naming both shapes when they differ.
inline void expect_shape(const Shape& got, const Shape& want, const char* where) {
  if (!(got == want))
    throw ShapeError(std::string(where) + ": expected shape " + want.str() + ", got " + got.str());
}

}  // namespace vitfreeze
