#pragma once
// Checkpoint surgery for tests and fuzz targets: a safetensors file's tensors rewritten through an
// edit and signed afresh (SafetensorsWriter recomputes both CRCs), so the result passes every
// integrity check and still says something wrong (an iteration, a frozen flag, a NaN, a negative
// second moment). What the loader must then catch is the meaning, not the damage.
#include <cstring>
#include <string_view>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/io/safetensors.hpp"

namespace vitfreeze::testing {

// The records of `r` after `edit(std::vector<io::TensorRecord>&)`, with r's metadata, as file bytes.
template <class Edit>
std::vector<std::byte> resigned(const io::SafetensorsReader& r, Edit&& edit) {
  std::vector<io::TensorRecord> records;
  for (const auto& name : r.names()) records.push_back(r.record(name));
  edit(records);
  io::SafetensorsWriter w;
  for (const auto& [k, v] : r.metadata()) w.add_metadata(k, v);
  for (auto& rec : records) w.add(std::move(rec));
  return w.to_bytes();
}

inline io::TensorRecord& record_named(std::vector<io::TensorRecord>& records, std::string_view name) {
  for (auto& r : records)
    if (r.name == name) return r;
  throw ConfigError("resigned: no tensor named " + quoted_excerpt(name));
}

// Element `index` of the record, which must hold T's (checked by size only: this is surgery).
template <class T>
void set_element(io::TensorRecord& r, std::size_t index, T value) {
  if ((index + 1) * sizeof(T) > r.data.size()) throw ConfigError("resigned: element outside " + quoted_excerpt(r.name));
  std::memcpy(r.data.data() + index * sizeof(T), &value, sizeof(T));
}
template <class T>
T get_element(const io::TensorRecord& r, std::size_t index) {
  if ((index + 1) * sizeof(T) > r.data.size()) throw ConfigError("resigned: element outside " + quoted_excerpt(r.name));
  T value;
  std::memcpy(&value, r.data.data() + index * sizeof(T), sizeof(T));
  return value;
}

}  // namespace vitfreeze::testing
