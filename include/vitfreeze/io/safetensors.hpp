#pragma once
// The safetensors format (https://huggingface.co/docs/safetensors), so weights load in PyTorch/timm:
//
//   [8 bytes: header length N, little-endian u64]
//   [N bytes: JSON {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
//                                                     "data_offsets": [begin, end]}, ...},
//              padded with spaces so the data section starts 8-byte aligned]
//   [data section: each tensor's row-major little-endian bytes at [begin, end)]
//
// The reader treats the file as untrusted: every length and offset is checked against the file
// size before it is used, so a truncated or corrupt file is a CheckpointError naming the file, the
// byte offset and what was expected, never a crash or a huge allocation. Like the reference
// implementation it requires the tensors to tile the data section exactly (no overlaps, gaps or
// trailing bytes). The writer records a CRC-32C of the data section in the metadata key
// "vitfreeze.crc32c" (a string, so other readers ignore it) and the reader verifies it when present.
//
// The header is covered too: "vitfreeze.header_crc32c" holds the CRC-32C of the 8-byte length field
// plus the header bytes as written (padding included) in which that key's own value reads
// "00000000". The writer emits compact JSON, so the member appears verbatim as
// "vitfreeze.header_crc32c":"xxxxxxxx"; the reader finds that text (exactly once, else it refuses),
// substitutes the zeros and recomputes. With both keys a flipped byte anywhere in the file is
// detected. A file whose header another tool re-serialised keeps neither guarantee: copy tensors
// and metadata through SafetensorsWriter (it recomputes both keys and drops stale ones) instead.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vitfreeze/core/dtype.hpp"
#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"
#include "vitfreeze/io/atomic_file.hpp"
#include "vitfreeze/io/checksum.hpp"
#include "vitfreeze/io/json.hpp"

namespace vitfreeze::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swapping");

inline constexpr std::string_view kChecksumKey = "vitfreeze.crc32c";
inline constexpr std::string_view kHeaderChecksumKey = "vitfreeze.header_crc32c";

// One tensor as stored: raw little-endian bytes of `dtype`, row-major over `shape`.
struct TensorRecord {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;
};

inline std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i64, DType::i32, DType::u8})
    if (dtype_name(d) == name) return d;
  return std::nullopt;
}

namespace detail {
// Element count of `shape`, or nullopt on a negative extent or overflow past 2^63.
inline std::optional<std::uint64_t> checked_numel(std::span<const std::int64_t> shape) {
  std::uint64_t n = 1;
  for (std::int64_t e : shape) {
    if (e < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(e), &n)) return std::nullopt;
  }
  if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  return n;
}

// Shape has an initializer-list constructor only; build one of run-time rank.
inline Shape make_shape(const std::vector<std::int64_t>& e) {
  switch (e.size()) {
    case 0: return Shape{};
    case 1: return Shape{e[0]};
    case 2: return Shape{e[0], e[1]};
    case 3: return Shape{e[0], e[1], e[2]};
    case 4: return Shape{e[0], e[1], e[2], e[3]};
    case 5: return Shape{e[0], e[1], e[2], e[3], e[4]};
    case 6: return Shape{e[0], e[1], e[2], e[3], e[4], e[5]};
    default: throw ShapeError("safetensors: rank " + std::to_string(e.size()) + " above Shape::kMaxRank");
  }
}

inline std::string hex32(std::uint32_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = kHex[v & 15];
  return s;
}

template <class T>
concept SafetensorsElement = requires { dtype_of<T>::value; };

inline constexpr std::string_view kHeaderChecksumPlaceholder = "00000000";

// The member as compact JSON writes it, with `value` as the checksum text.
inline std::string header_checksum_member(std::string_view value) {
  return "\"" + std::string(kHeaderChecksumKey) + "\":\"" + std::string(value) + "\"";
}

// Position of the only occurrence of `needle` in `text`, or npos when absent or repeated.
inline std::size_t find_unique(std::string_view text, std::string_view needle) {
  const std::size_t at = text.find(needle);
  if (at == std::string_view::npos || text.find(needle, at + 1) != std::string_view::npos) return std::string_view::npos;
  return at;
}

// CRC-32C of the length field followed by the header text (with the placeholder in place).
inline std::uint32_t header_crc(std::string_view header_text) {
  std::byte length[8];
  std::uint64_t n = header_text.size();
  for (auto& b : length) {
    b = static_cast<std::byte>(n & 0xff);
    n >>= 8;
  }
  return crc32c(header_text, crc32c(length));
}
}  // namespace detail

// Collects tensors (copied at add time, in order) and metadata, then writes one file.
class SafetensorsWriter {
 public:
  // Host tensors only: the bytes are copied out of t.data().
  template <detail::SafetensorsElement T>
  void add(std::string name, const Tensor<T>& t) {
    TensorRecord r;
    r.name = std::move(name);
    r.dtype = dtype_v<T>;
    for (int i = 0; i < t.rank(); ++i) r.shape.push_back(t.dim(i));
    const auto* p = reinterpret_cast<const std::byte*>(t.data());
    r.data.assign(p, p + t.bytes());
    add(std::move(r));
  }

  void add(TensorRecord record) {
    if (record.name == "__metadata__" || record.name.empty())
      throw ConfigError("safetensors: invalid tensor name \"" + record.name + "\"");
    if (index_.count(record.name)) throw ConfigError("safetensors: tensor \"" + record.name + "\" added twice");
    const auto numel = detail::checked_numel(record.shape);
    if (!numel || *numel * dtype_size(record.dtype) != record.data.size())
      throw ConfigError("safetensors: tensor \"" + record.name + "\" has " + std::to_string(record.data.size()) +
                        " bytes, which does not match its dtype and shape");
    index_.emplace(record.name, records_.size());
    records_.push_back(std::move(record));
  }

  void add_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }
  // Both checksums (data and header) are on by default; turn off for byte-exact output equal to
  // other writers'. Metadata under the reserved checksum keys is always recomputed or dropped.
  void set_checksum(bool enabled) { checksum_ = enabled; }

  std::size_t size() const { return records_.size(); }

  // The header as written: compact JSON padded with spaces to a multiple of 8 bytes.
  std::string header() const {
    Json root = Json::object();
    Json meta = Json::object();
    for (const auto& [k, v] : metadata_)
      if (k != kChecksumKey && k != kHeaderChecksumKey) meta.set(k, v);
    if (checksum_) {
      std::uint32_t crc = 0;
      for (const auto& r : records_) crc = crc32c(r.data, crc);
      meta.set(kChecksumKey, detail::hex32(crc));
      meta.set(kHeaderChecksumKey, std::string(detail::kHeaderChecksumPlaceholder));
    }
    if (meta.size() > 0) root.set("__metadata__", std::move(meta));
    std::uint64_t offset = 0;
    for (const auto& r : records_) {
      Json shape = Json::array();
      for (std::int64_t e : r.shape) shape.push_back(e);
      Json entry = Json::object();
      entry.set("dtype", std::string(dtype_name(r.dtype)));
      entry.set("shape", std::move(shape));
      entry.set("data_offsets", Json(Json::Array{Json(offset), Json(offset + r.data.size())}));
      root.set(r.name, std::move(entry));
      offset += r.data.size();
    }
    std::string text = root.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    if (checksum_) {
      const std::string member = detail::header_checksum_member(detail::kHeaderChecksumPlaceholder);
      const std::size_t at = detail::find_unique(text, member);
      if (at == std::string::npos)
        throw ConfigError("safetensors: metadata or tensor names repeat the text " + member + "; cannot checksum the header");
      const std::string crc = detail::hex32(detail::header_crc(text));
      text.replace(at + member.size() - 1 - crc.size(), crc.size(), crc);
    }
    return text;
  }

  // Writes the file atomically (see atomic_file.hpp).
  void write(const std::filesystem::path& path) const {
    const std::string head = header();
    write_file_atomic(path, [&](FileSink& sink) { emit(head, [&](std::span<const std::byte> b) { sink.write(b); }); });
  }

  std::vector<std::byte> to_bytes() const {
    std::vector<std::byte> out;
    emit(header(), [&](std::span<const std::byte> b) { out.insert(out.end(), b.begin(), b.end()); });
    return out;
  }

 private:
  std::vector<TensorRecord> records_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  bool checksum_ = true;

  void emit(const std::string& head, const std::function<void(std::span<const std::byte>)>& out) const {
    std::byte length[8];
    std::uint64_t n = head.size();
    for (auto& b : length) {
      b = static_cast<std::byte>(n & 0xff);
      n >>= 8;
    }
    out(length);
    out(std::as_bytes(std::span(head.data(), head.size())));
    for (const auto& r : records_) out(r.data);
  }
};

// Where one tensor lives in the data section.
struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // relative to the start of the data section
  std::int64_t numel() const { return static_cast<std::int64_t>((end - begin) / dtype_size(dtype)); }
};

// Reads and validates a whole file up front; afterwards every accessor is bounds-safe.
class SafetensorsReader {
 public:
  // Headers above this are rejected before parsing (the reference implementation's limit).
  static constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

  explicit SafetensorsReader(const std::filesystem::path& path) : source_(path.string()) {
    try {
      file_ = read_file(path);
    } catch (const CheckpointError&) {
      throw;
    } catch (const FileError& e) {
      throw CheckpointError(e.file(), e.offset(), e.what());
    }
    validate();
  }
  // From bytes already in memory; `source` names them in errors.
  SafetensorsReader(std::vector<std::byte> file_bytes, std::string source)
      : source_(std::move(source)), file_(std::move(file_bytes)) {
    validate();
  }

  const std::string& source() const { return source_; }
  bool has(std::string_view name) const { return index_.count(std::string(name)) != 0; }
  // Tensor names in header order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& t : tensors_) out.push_back(t.name);
    return out;
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Whether the file carried (and passed) the data / header checksums. Files from other writers
  // carry neither; callers that require integrity (checkpoints) check these.
  bool data_checksum_verified() const { return data_verified_; }
  bool header_checksum_verified() const { return header_verified_; }

  const TensorInfo& info(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end()) fail(8, "a tensor named " + quoted_excerpt(name) + " in the header");
    return tensors_[it->second];
  }
  std::span<const std::byte> bytes(std::string_view name) const {
    const TensorInfo& t = info(name);
    return std::span(file_).subspan(data_start_ + t.begin, t.end - t.begin);
  }
  TensorRecord record(std::string_view name) const {
    const TensorInfo& t = info(name);
    const auto b = bytes(name);
    return TensorRecord{t.name, t.dtype, t.shape, std::vector<std::byte>(b.begin(), b.end())};
  }

  // A float tensor from F32, F64, BF16 or F16 data (converted, rounding to nearest).
  Tensor<float> get_f32(std::string_view name) const { return get_floating<float>(name); }
  Tensor<double> get_f64(std::string_view name) const { return get_floating<double>(name); }
  // A tensor whose stored dtype is exactly T's.
  template <detail::SafetensorsElement T>
  Tensor<T> get(std::string_view name) const {
    const TensorInfo& t = info(name);
    if (t.dtype != dtype_v<T>)
      fail(data_start_ + t.begin, "tensor " + quoted_excerpt(t.name) + " of dtype " + std::string(dtype_name(dtype_v<T>)) +
                                      ", found " + std::string(dtype_name(t.dtype)));
    Tensor<T> out(shape_of(t));
    std::memcpy(static_cast<void*>(out.data()), bytes(name).data(), out.bytes());
    return out;
  }

 private:
  std::string source_;
  std::vector<std::byte> file_;
  std::uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  bool data_verified_ = false, header_verified_ = false;

  [[noreturn]] void fail(std::uint64_t offset, const std::string& expected) const {
    throw CheckpointError(source_, offset, "safetensors: expected " + expected);
  }

  Shape shape_of(const TensorInfo& t) const {
    if (t.shape.size() > static_cast<std::size_t>(Shape::kMaxRank))
      fail(data_start_ + t.begin, "tensor " + quoted_excerpt(t.name) + " of rank at most " + std::to_string(Shape::kMaxRank));
    return detail::make_shape(t.shape);
  }

  template <class T>
  static T read_element(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));  // the data section need not be aligned for T
    return v;
  }

  template <class Out>
  Tensor<Out> get_floating(std::string_view name) const {
    const TensorInfo& t = info(name);
    Tensor<Out> out(shape_of(t));
    const std::byte* p = bytes(name).data();
    const std::int64_t n = t.numel();
    switch (t.dtype) {
      case DType::f32: for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(read_element<float>(p + 4 * i)); break;
      case DType::f64: for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(read_element<double>(p + 8 * i)); break;
      case DType::bf16: for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<float>(read_element<bf16>(p + 2 * i))); break;
      case DType::f16: for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<float>(read_element<f16>(p + 2 * i))); break;
      default:
        fail(data_start_ + t.begin, "tensor " + quoted_excerpt(t.name) + " of a floating dtype (F32, F64, BF16, F16), found " +
                                        std::string(dtype_name(t.dtype)));
    }
    return out;
  }

  static std::optional<std::uint64_t> non_negative_int(const Json& v) {
    if (!v.is_int()) return std::nullopt;
    const std::int64_t i = v.as_int();
    if (i < 0) return std::nullopt;
    return static_cast<std::uint64_t>(i);
  }

  void validate() {
    const std::uint64_t size = file_.size();
    if (size < 8) fail(0, "an 8-byte little-endian header length, but the file has " + std::to_string(size) + " bytes");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(file_[static_cast<std::size_t>(i)]);
    if (n > size - 8)
      fail(0, "a header length of at most " + std::to_string(size - 8) + " (the bytes after the length field), found " +
                  std::to_string(n));
    if (n > kMaxHeaderBytes)
      fail(0, "a header length of at most " + std::to_string(kMaxHeaderBytes) + ", found " + std::to_string(n));
    data_start_ = 8 + n;
    const std::uint64_t data_size = size - data_start_;

    Json header;
    try {
      const std::string_view text(reinterpret_cast<const char*>(file_.data()) + 8, n);
      header = Json::parse(text, source_, Json::ParseLimits{.max_depth = 16});
    } catch (const JsonParseError& e) {
      throw CheckpointError(source_, 8 + e.offset(), std::string("safetensors header: ") + e.what());
    }
    if (!header.is_object()) fail(8, "the header to be a JSON object");

    for (const auto& [name, entry] : header.as_object()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) fail(8, "\"__metadata__\" to be an object of strings");
        for (const auto& [k, v] : entry.as_object()) {
          if (!v.is_string()) fail(8, "\"__metadata__\" value of " + quoted_excerpt(k) + " to be a string");
          metadata_[k] = v.as_string();
        }
        continue;
      }
      tensors_.push_back(parse_entry(name, entry, data_size));
      index_.emplace(name, tensors_.size() - 1);
    }
    verify_header_checksum(n);
    check_tiling(data_size);
    verify_checksum();
  }

  TensorInfo parse_entry(const std::string& name, const Json& entry, std::uint64_t data_size) const {
    const std::string who = "tensor " + quoted_excerpt(name);
    if (!entry.is_object()) fail(8, who + " to be an object with dtype, shape and data_offsets");
    for (const auto& [k, v] : entry.as_object())
      if (k != "dtype" && k != "shape" && k != "data_offsets") fail(8, who + " to have only dtype, shape and data_offsets, found " + quoted_excerpt(k));
    const Json* dtype = entry.find("dtype");
    const Json* shape = entry.find("shape");
    const Json* offsets = entry.find("data_offsets");
    if (!dtype || !shape || !offsets) fail(8, who + " to have dtype, shape and data_offsets");

    TensorInfo t;
    t.name = name;
    if (!dtype->is_string()) fail(8, who + ": dtype to be a string");
    const auto d = dtype_from_name(dtype->as_string());
    if (!d) fail(8, who + ": a dtype among F32, F16, BF16, F64, I64, I32, U8, found " + quoted_excerpt(dtype->as_string()));
    t.dtype = *d;

    if (!shape->is_array()) fail(8, who + ": shape to be an array");
    for (const Json& e : shape->as_array()) {
      const auto v = non_negative_int(e);
      if (!v) fail(8, who + ": shape extents to be non-negative integers");
      t.shape.push_back(static_cast<std::int64_t>(*v));
    }
    if (!offsets->is_array() || offsets->size() != 2) fail(8, who + ": data_offsets to be [begin, end]");
    const auto begin = non_negative_int(offsets->as_array()[0]);
    const auto end = non_negative_int(offsets->as_array()[1]);
    if (!begin || !end) fail(8, who + ": data_offsets to be non-negative integers");
    if (*begin > *end) fail(8, who + ": data_offsets begin <= end, found [" + std::to_string(*begin) + ", " + std::to_string(*end) + "]");
    if (*end > data_size)
      fail(data_start_ + std::min(*begin, data_size),
           who + ": data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) +
               "] within the data section of " + std::to_string(data_size) + " bytes (file size " +
               std::to_string(file_.size()) + ")");
    t.begin = *begin;
    t.end = *end;

    const auto numel = detail::checked_numel(t.shape);
    std::uint64_t want = 0;
    if (!numel || __builtin_mul_overflow(*numel, dtype_size(t.dtype), &want) || want != t.end - t.begin)
      fail(data_start_ + t.begin, who + ": " + std::to_string(t.end - t.begin) + " bytes to equal shape product x " +
                                       std::to_string(dtype_size(t.dtype)) + " bytes per " +
                                       std::string(dtype_name(t.dtype)));
    return t;
  }

  // The tensors must cover the data section exactly once, as the reference reader requires.
  void check_tiling(std::uint64_t data_size) const {
    std::vector<const TensorInfo*> order;
    for (const auto& t : tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::uint64_t covered = 0;
    const TensorInfo* previous = nullptr;
    for (const TensorInfo* t : order) {
      if (t->begin < covered)
        fail(data_start_ + t->begin, "tensor " + quoted_excerpt(t->name) + " to start at or after byte " + std::to_string(covered) +
                                         " of the data section (it overlaps " + quoted_excerpt(previous->name) + ")");
      if (t->begin > covered)
        fail(data_start_ + covered, "tensor data to be contiguous: bytes [" + std::to_string(covered) + ", " +
                                        std::to_string(t->begin) + ") of the data section belong to no tensor");
      covered = t->end;
      previous = t;
    }
    if (covered != data_size)
      fail(data_start_ + covered, "the data section to end after the last tensor at byte " + std::to_string(covered) +
                                      ", found " + std::to_string(data_size - covered) + " trailing bytes");
  }

  void verify_checksum() {
    const auto it = metadata_.find(std::string(kChecksumKey));
    if (it == metadata_.end()) return;
    // The tiling check has run, so the data section is exactly the tensors' bytes.
    const std::uint32_t crc = crc32c(std::span(file_).subspan(data_start_));
    if (it->second != detail::hex32(crc))
      fail(data_start_, "data CRC-32C " + quoted_excerpt(it->second) + " (from \"" + std::string(kChecksumKey) + "\"), computed " +
                            detail::hex32(crc) + ": the tensor data is corrupt");
    data_verified_ = true;
  }

  void verify_header_checksum(std::uint64_t header_bytes) {
    const auto it = metadata_.find(std::string(kHeaderChecksumKey));
    if (it == metadata_.end()) return;
    std::string text(reinterpret_cast<const char*>(file_.data()) + 8, header_bytes);
    const std::string member = detail::header_checksum_member(it->second);
    const std::size_t at = detail::find_unique(text, member);
    if (at == std::string::npos || it->second.size() != detail::kHeaderChecksumPlaceholder.size())
      fail(8, "\"" + std::string(kHeaderChecksumKey) + "\" written exactly once as " + quoted_excerpt(member) +
                  " (compact JSON, 8 hex digits): the header was rewritten or is corrupt");
    const std::size_t value_at = at + member.size() - 1 - it->second.size();
    text.replace(value_at, it->second.size(), detail::kHeaderChecksumPlaceholder);
    const std::uint32_t crc = detail::header_crc(text);
    if (it->second != detail::hex32(crc))
      fail(8 + value_at, "header CRC-32C " + it->second + " (from \"" + std::string(kHeaderChecksumKey) +
                             "\"), computed " + detail::hex32(crc) + ": the header is corrupt");
    header_verified_ = true;
  }
};

}  // namespace vitfreeze::io
