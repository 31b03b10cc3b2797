#pragma once
// Training checkpoints: one safetensors file per save, verified before anything is restored.
//
// Layout (names inside the file):
//   param/<timm name>        every parameter, dtype of the model, shape as in weight files
//   adam_m/<name>, adam_v/<name>, adam_step/<name> (I64 scalar)
//                            AdamW state of the parameters that have one (frozen units have none)
//   freeze/frozen (U8 [units]), freeze/last_step (I64)   the FreezeController's State
//   train/iteration, train/epoch, train/batch, train/skipped_steps (I64 scalars)
//                            the next step to run: global iteration g and its (epoch, batch) in the
//                            loader's deterministic order; the count of non-finite steps skipped
//   __metadata__: vitfreeze.format = "checkpoint/1", vitfreeze.config = {"architecture": ..,
//                 "recipe": ..} as compact JSON, vitfreeze.architecture_hash / recipe_hash (CRC-32C
//                 of each part's compact JSON), plus the data and header CRCs (safetensors.hpp).
//
// Files are named ckpt-<iteration, at least 6 digits>.safetensors and written with
// write_file_atomic, so a directory only ever holds complete files (a killed writer leaves a
// `.tmp.<pid>` file that no scan matches and pruning removes). "latest" is found by scanning names,
// not through a symlink that could race with a writer.
//
// Loading order: integrity (both CRCs present and correct) -> configuration (architecture and recipe
// equal to this run's, else CheckpointMismatch listing every difference) -> every tensor's presence,
// dtype and shape (again all differences at once) -> only then the model is written.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "vitfreeze/autograd/parameter.hpp"
#include "vitfreeze/core/error.hpp"
#include "vitfreeze/io/safetensors.hpp"

namespace vitfreeze::io {

// The file is intact but was written by a different model or recipe: resuming from an older file
// would not help, unlike corruption.
class CheckpointMismatch : public CheckpointError {
 public:
  using CheckpointError::CheckpointError;
};

inline constexpr std::string_view kCheckpointFormat = "checkpoint/1";

// ---- names and the directory ------------------------------------------------------------------------

inline std::string checkpoint_file_name(std::int64_t iteration) {
  if (iteration < 0) throw ConfigError("checkpoint_file_name: negative iteration " + std::to_string(iteration));
  std::string digits = std::to_string(iteration);
  if (digits.size() < 6) digits.insert(0, 6 - digits.size(), '0');
  return "ckpt-" + digits + ".safetensors";
}

// The iteration of a checkpoint file name, or nothing for any other name (temporaries included).
inline std::optional<std::int64_t> parse_checkpoint_file_name(std::string_view name) {
  constexpr std::string_view prefix = "ckpt-", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix))
    return std::nullopt;
  const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() < 6 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  std::int64_t value = 0;
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) return std::nullopt;
  return value;
}

struct CheckpointFile {
  std::filesystem::path path;
  std::int64_t iteration = 0;
};

// Checkpoints in `dir`, oldest first. A missing directory has none.
inline std::vector<CheckpointFile> list_checkpoints(const std::filesystem::path& dir) {
  std::vector<CheckpointFile> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file(ec)) continue;
    if (const auto it = parse_checkpoint_file_name(entry.path().filename().string())) out.push_back({entry.path(), *it});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.iteration < b.iteration; });
  return out;
}

inline std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back().path;
}

// Keeps the newest `keep` checkpoints (keep >= 1) and removes temporaries left by writers that
// died (`<name>.tmp.<pid>` whose process no longer exists); a live writer's temporary is kept.
inline void prune_checkpoints(const std::filesystem::path& dir, int keep) {
  if (keep < 1) throw ConfigError("prune_checkpoints: keep must be >= 1, got " + std::to_string(keep));
  auto all = list_checkpoints(dir);
  std::error_code ec;
  for (std::size_t i = 0; i + std::size_t(keep) < all.size(); ++i) std::filesystem::remove(all[i].path, ec);
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::size_t tmp = name.rfind(".tmp.");
    if (tmp == std::string::npos || !parse_checkpoint_file_name(name.substr(0, tmp))) continue;
    long pid = 0;
    const std::string_view digits(name.data() + tmp + 5, name.size() - tmp - 5);
    const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
    if (r.ec != std::errc() || r.ptr != digits.data() + digits.size() || pid <= 0) continue;
    if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) std::filesystem::remove(entry.path(), ec);
  }
}

// Writes `writer` as dir/ckpt-<iteration>.safetensors (atomically) and prunes to `keep` files.
inline std::filesystem::path write_checkpoint(const std::filesystem::path& dir, std::int64_t iteration,
                                              const SafetensorsWriter& writer, int keep) {
  std::filesystem::create_directories(dir);
  const auto path = dir / checkpoint_file_name(iteration);
  writer.write(path);
  prune_checkpoints(dir, keep);
  return path;
}

// ---- configuration ------------------------------------------------------------------------------------

inline std::string json_hash(const Json& j) { return detail::hex32(crc32c(j.dump())); }

// Every difference between two configuration trees as "path: checkpoint X, this run Y".
inline void config_differences(const Json& found, const Json& expected, const std::string& path,
                               std::vector<std::string>& out) {
  if (found.is_object() && expected.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, v] : found.as_object()) keys.insert(k);
    for (const auto& [k, v] : expected.as_object()) keys.insert(k);
    for (const auto& k : keys) {
      const Json* a = found.find(k);
      const Json* b = expected.find(k);
      const std::string sub = path.empty() ? k : path + "." + k;
      if (!a) out.push_back(sub + ": missing in the checkpoint, this run " + b->dump());
      else if (!b) out.push_back(sub + ": checkpoint " + a->dump() + ", absent in this run");
      else config_differences(*a, *b, sub, out);
    }
    return;
  }
  if (!(found == expected)) out.push_back(path + ": checkpoint " + found.dump() + ", this run " + expected.dump());
}

inline void add_checkpoint_config(SafetensorsWriter& w, const Json& architecture, const Json& recipe) {
  Json config = Json::object();
  config.set("architecture", architecture);
  config.set("recipe", recipe);
  w.add_metadata("vitfreeze.format", std::string(kCheckpointFormat));
  w.add_metadata("vitfreeze.config", config.dump());
  w.add_metadata("vitfreeze.architecture_hash", json_hash(architecture));
  w.add_metadata("vitfreeze.recipe_hash", json_hash(recipe));
}

// Opens `path`, requires both checksums, and checks its configuration against this run's. Touches
// nothing but the file. Corruption: CheckpointError; a different model or recipe: CheckpointMismatch.
inline SafetensorsReader open_checkpoint(const std::filesystem::path& path, const Json& architecture,
                                         const Json& recipe) {
  SafetensorsReader r(path);
  const std::string file = path.string();
  if (!r.data_checksum_verified() || !r.header_checksum_verified())
    throw CheckpointError(file, 8, "checkpoint: expected the \"" + std::string(kChecksumKey) + "\" and \"" +
                                       std::string(kHeaderChecksumKey) + "\" checksums in __metadata__ (not a vitfreeze checkpoint?)");
  const auto& meta = r.metadata();
  auto get = [&](const std::string& key) -> const std::string& {
    const auto it = meta.find(key);
    if (it == meta.end()) throw CheckpointError(file, 8, "checkpoint: expected metadata \"" + key + "\"");
    return it->second;
  };
  if (get("vitfreeze.format") != kCheckpointFormat)
    throw CheckpointError(file, 8, "checkpoint: expected format " + std::string(kCheckpointFormat) + ", found " +
                                       get("vitfreeze.format"));
  Json config;
  try {
    config = Json::parse(get("vitfreeze.config"), file);
  } catch (const JsonParseError& e) {
    throw CheckpointError(file, 8, std::string("checkpoint: vitfreeze.config is not JSON: ") + e.what());
  }
  if (!config.is_object() || !config.contains("architecture") || !config.contains("recipe"))
    throw CheckpointError(file, 8, "checkpoint: expected vitfreeze.config to hold architecture and recipe");
  const Json& arch = config.at("architecture");
  const Json& rec = config.at("recipe");
  if (json_hash(arch) != get("vitfreeze.architecture_hash") || json_hash(rec) != get("vitfreeze.recipe_hash"))
    throw CheckpointError(file, 8, "checkpoint: the configuration does not match its recorded hashes");
  std::vector<std::string> diffs;
  if (json_hash(arch) != json_hash(architecture)) config_differences(arch, architecture, "architecture", diffs);
  if (json_hash(rec) != json_hash(recipe)) config_differences(rec, recipe, "recipe", diffs);
  if (!diffs.empty()) {
    std::string what = "checkpoint: written by a different configuration (" + std::to_string(diffs.size()) +
                       " difference" + (diffs.size() == 1 ? "" : "s") + "):";
    for (const auto& d : diffs) what += "\n  " + d;
    throw CheckpointMismatch(file, 8, what);
  }
  return r;
}

// The newest checkpoint of `dir` that is intact and matches; a corrupt newer one is reported to
// `warn` and skipped (the atomic writer never leaves one, but disks do). A mismatch is not skipped:
// it would apply to every file of the run. Nothing found: nullopt.
struct OpenedCheckpoint {
  std::filesystem::path path;
  SafetensorsReader reader;
};
template <class Warn>
std::optional<OpenedCheckpoint> open_latest_checkpoint(const std::filesystem::path& dir, const Json& architecture,
                                                       const Json& recipe, Warn&& warn) {
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      return OpenedCheckpoint{it->path, open_checkpoint(it->path, architecture, recipe)};
    } catch (const CheckpointMismatch&) {
      throw;
    } catch (const CheckpointError& e) {
      warn(e);
    }
  }
  return std::nullopt;
}

// ---- tensors --------------------------------------------------------------------------------------------

// A scalar I64 tensor.
inline void add_i64(SafetensorsWriter& w, std::string name, std::int64_t value) {
  w.add(std::move(name), Tensor<std::int64_t>::full(Shape{}, value));
}
inline std::int64_t get_i64(const SafetensorsReader& r, std::string_view name) {
  const auto t = r.get<std::int64_t>(name);
  if (t.numel() != 1)
    throw CheckpointError(r.source(), 8, "checkpoint: expected \"" + std::string(name) + "\" to be one I64 value");
  return t[0];
}

namespace detail {
inline std::vector<std::int64_t> extents(const Shape& s) {
  std::vector<std::int64_t> e;
  for (int i = 0; i < s.rank(); ++i) e.push_back(s[i]);
  return e;
}
inline std::string shape_text(const std::vector<std::int64_t>& e) {
  std::string s = "[";
  for (std::size_t i = 0; i < e.size(); ++i) s += (i ? ", " : "") + std::to_string(e[i]);
  return s + "]";
}
}  // namespace detail

// The shape a parameter has in weight files (the 4-D conv kernel of the patch embedding).
template <CpuScalar T>
const Shape& file_shape_of(const Parameter<T>& p) {
  return p.file_shape.numel() == p.value.numel() ? p.file_shape : p.value.shape();
}

// Records into `problems` how the file's tensor `name` differs from dtype/shape (nothing if equal).
inline void expect_tensor(const SafetensorsReader& r, const std::string& name, DType dtype,
                          const std::vector<std::int64_t>& shape, std::vector<std::string>& problems) {
  if (!r.has(name)) {
    problems.push_back(name + ": missing (expected " + std::string(dtype_name(dtype)) + " " + detail::shape_text(shape) + ")");
    return;
  }
  const TensorInfo& t = r.info(name);
  if (t.dtype != dtype || t.shape != shape)
    problems.push_back(name + ": file has " + std::string(dtype_name(t.dtype)) + " " + detail::shape_text(t.shape) +
                       ", expected " + std::string(dtype_name(dtype)) + " " + detail::shape_text(shape));
}

inline void throw_if_problems(const SafetensorsReader& r, const std::vector<std::string>& problems,
                              const std::string& what) {
  if (problems.empty()) return;
  std::string text = what + " (" + std::to_string(problems.size()) + " problem" + (problems.size() == 1 ? "" : "s") + "):";
  for (const auto& p : problems) text += "\n  " + p;
  throw CheckpointMismatch(r.source(), 8, text);
}

// Parameters under `prefix` in their weight-file shape (file_shape).
template <CpuScalar T>
void add_parameters(SafetensorsWriter& w, const std::vector<Parameter<T>*>& params, const std::string& prefix) {
  for (const auto* p : params) w.add(prefix + p->name, p->value.view(file_shape_of(*p)));
}

// AdamW state of every parameter that has one (m, v, step), through the optimiser's
// state(p) -> const State* interface.
template <CpuScalar T, class Optimizer>
void add_optimizer_state(SafetensorsWriter& w, const Optimizer& opt, const std::vector<Parameter<T>*>& params) {
  for (const auto* p : params) {
    const auto* s = opt.state(*p);
    if (!s || s->m.empty()) continue;
    w.add("adam_m/" + p->name, s->m);
    w.add("adam_v/" + p->name, s->v);
    add_i64(w, "adam_step/" + p->name, s->step);
  }
}

// Problems with the parameter tensors (and their optional AdamW state) in `r`, without changing anything.
// `frozen(p)` says whether the parameter will be frozen after loading (then it must have no state).
template <CpuScalar T, class IsFrozen>
void check_parameters(const SafetensorsReader& r, const std::vector<Parameter<T>*>& params, IsFrozen&& frozen,
                      std::vector<std::string>& problems) {
  std::set<std::string> known;
  for (const auto* p : params) {
    if (!known.insert(p->name).second) throw ConfigError("checkpoint: two parameters named " + p->name);
    expect_tensor(r, "param/" + p->name, dtype_v<T>, detail::extents(file_shape_of(*p)), problems);
    const bool has_m = r.has("adam_m/" + p->name);
    if (has_m || r.has("adam_v/" + p->name) || r.has("adam_step/" + p->name)) {
      if (frozen(*p)) problems.push_back(p->name + ": AdamW state stored for a frozen parameter");
      expect_tensor(r, "adam_m/" + p->name, dtype_v<T>, detail::extents(p->value.shape()), problems);
      expect_tensor(r, "adam_v/" + p->name, dtype_v<T>, detail::extents(p->value.shape()), problems);
      expect_tensor(r, "adam_step/" + p->name, DType::i64, {}, problems);
    }
  }
  for (const auto& name : r.names())
    for (std::string_view prefix : {"param/", "adam_m/", "adam_v/", "adam_step/"})
      if (name.starts_with(prefix) && !known.count(name.substr(prefix.size())))
        problems.push_back(name + ": in the checkpoint but not in the model");
}

// Copies values and optimiser state in; call check_parameters first (this assumes it passed).
template <CpuScalar T, class Optimizer>
void restore_parameters(const SafetensorsReader& r, const std::vector<Parameter<T>*>& params, Optimizer& opt) {
  for (auto* p : params) {
    const auto bytes = r.bytes("param/" + p->name);
    std::memcpy(static_cast<void*>(p->value.data()), bytes.data(), p->value.bytes());
    if (r.has("adam_m/" + p->name)) {
      auto& s = opt.mutable_state(*p);
      s.m = r.get<T>("adam_m/" + p->name);
      s.v = r.get<T>("adam_v/" + p->name);
      s.step = get_i64(r, "adam_step/" + p->name);
    } else {
      opt.release(*p);
    }
  }
}

}  // namespace vitfreeze::io
