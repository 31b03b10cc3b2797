#pragma once
// Tensor<T, Space>: a dense row-major array of T with a shape. It either owns its buffer (shared, so
// copies are cheap views of the same memory) or borrows one (from an Arena, a backend's cache, or a
// caller's buffer). Views (reshape, leading-dimension slices) share the buffer. Space says where
// the elements live (core/memory_space.hpp): host tensors (the default) have element accessors,
// device tensors only their pointer, shape and views, so device memory is never read by mistake.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>

#include "vitfreeze/core/dtype.hpp"
#include "vitfreeze/core/memory_space.hpp"
#include "vitfreeze/core/shape.hpp"

namespace vitfreeze {

namespace detail {
inline constexpr std::size_t kAlignment = 64;  // one cache line, one AVX-512 register
inline std::size_t round_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }
inline std::shared_ptr<void> aligned_buffer(std::size_t bytes) {
  void* p = std::aligned_alloc(kAlignment, round_up(std::max<std::size_t>(bytes, 1), kAlignment));
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}
}  // namespace detail

template <class T, MemorySpace Space = HostMemory>
class Tensor {
  static constexpr bool kHost = std::is_same_v<Space, HostMemory>;

 public:
  using value_type = T;
  using space = Space;

  Tensor() = default;
  // Owning, zero-filled (host only: device tensors come from a backend's allocator).
  explicit Tensor(const Shape& shape)
    requires kHost
      : shape_(shape) {
    owner_ = detail::aligned_buffer(sizeof(T) * static_cast<std::size_t>(shape.numel()));
    data_ = static_cast<T*>(owner_.get());
    std::memset(static_cast<void*>(data_), 0, bytes());
  }
  static Tensor zeros(const Shape& shape)
    requires kHost
  {
    return Tensor(shape);
  }
  static Tensor full(const Shape& shape, T value)
    requires kHost
  {
    Tensor t(shape);
    t.fill(value);
    return t;
  }
  // A view of memory owned elsewhere; `owner` (optional) keeps it alive.
  static Tensor borrow(T* data, const Shape& shape, std::shared_ptr<void> owner = {}) {
    Tensor t;
    t.data_ = data;
    t.shape_ = shape;
    t.owner_ = std::move(owner);
    return t;
  }

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return sizeof(T) * static_cast<std::size_t>(numel()); }
  bool empty() const { return data_ == nullptr; }
  std::span<T> span() const
    requires kHost
  {
    return {data_, static_cast<std::size_t>(numel())};
  }

  T& operator[](std::int64_t i) const
    requires kHost
  {
    return data_[i];
  }
  template <class... I>
    requires kHost
  T& at(I... idx) const {
    static_assert(sizeof...(I) > 0);
    const std::int64_t ids[] = {static_cast<std::int64_t>(idx)...};
    std::int64_t flat = 0;
    for (int d = 0; d < static_cast<int>(sizeof...(I)); ++d) flat = flat * shape_[d] + ids[d];
    for (int d = sizeof...(I); d < rank(); ++d) flat *= shape_[d];
    return data_[flat];
  }

  // Same buffer, another shape with the same element count.
  Tensor view(const Shape& shape) const {
    if (shape.numel() != numel())
      throw ShapeError("Tensor::view: cannot view " + shape_.str() + " as " + shape.str());
    Tensor t = *this;
    t.shape_ = shape;
    return t;
  }
  // Rows [begin, end) of the leading dimension.
  Tensor slice(std::int64_t begin, std::int64_t end) const {
    if (rank() == 0 || begin < 0 || end > shape_[0] || begin > end)
      throw ShapeError("Tensor::slice: [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") out of " + shape_.str());
    Tensor t = *this;
    t.shape_ = shape_.with_first(end - begin);
    t.data_ = data_ + begin * (numel() / std::max<std::int64_t>(shape_[0], 1));
    return t;
  }

  void fill(T value) const
    requires kHost
  {
    std::fill(data_, data_ + numel(), value);
  }
  void zero() const
    requires kHost
  {
    std::memset(static_cast<void*>(data_), 0, bytes());
  }
  void copy_from(const Tensor& other) const
    requires kHost
  {
    expect_shape(other.shape(), shape_, "Tensor::copy_from");
    std::memcpy(static_cast<void*>(data_), other.data_, bytes());
  }
  Tensor clone() const
    requires kHost
  {
    Tensor t(shape_);
    std::memcpy(static_cast<void*>(t.data_), data_, bytes());
    return t;
  }
  template <class U>
    requires kHost
  Tensor<U> cast() const {
    Tensor<U> t(shape_);
    for (std::int64_t i = 0; i < numel(); ++i) t[i] = static_cast<U>(data_[i]);
    return t;
  }

  // What keeps the buffer alive (null for a plain borrow); backends hand it on to views they make.
  const std::shared_ptr<void>& owner() const { return owner_; }

 private:
  std::shared_ptr<void> owner_;
  T* data_ = nullptr;
  Shape shape_;
};

}  // namespace vitfreeze
