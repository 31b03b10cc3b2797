#pragma once
// Where a tensor's elements live, as a type: a Tensor<T, DeviceMemory> cannot be read on the host
// (its element accessors do not exist), and a backend's arrays carry its space in their type.
#include <concepts>

namespace vitfreeze {

struct HostMemory {
  static constexpr const char* name = "host";
};
struct DeviceMemory {
  static constexpr const char* name = "device";
};

template <class S>
concept MemorySpace = std::same_as<S, HostMemory> || std::same_as<S, DeviceMemory>;

}  // namespace vitfreeze
