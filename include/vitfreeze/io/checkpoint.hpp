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
// not through a symlink that could race with a writer, and a name counts only when the file is one
// of the run's (RunCheckpoints): intact, written by its architecture and recipe, and holding the
// iteration its name says. Pruning removes only such files, so a damaged file, a file renamed by
// hand or the checkpoints of another run in the same directory neither push the run's own
// checkpoints out nor get deleted.
//
// Loading order: integrity (both CRCs present and correct) -> configuration (architecture and recipe
// equal to this run's, else CheckpointMismatch listing every difference) -> every tensor's presence,
// dtype and shape, then its values (parameters and moments finite, second moments >= 0, step counts
// in range; again all problems at once) -> only then the model is written.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
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

// Removes the temporaries left by writers that died (`<checkpoint name>.tmp.<pid>` whose process no
// longer exists); a live writer's temporary is kept.
inline void remove_dead_writers_temporaries(const std::filesystem::path& dir) {
  std::error_code ec;
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

// ---- configuration ------------------------------------------------------------------------------------

inline std::string json_hash(const Json& j) { return detail::hex32(crc32c(j.dump())); }

inline constexpr std::string_view kMissingInCheckpoint = ": missing in the checkpoint, this run ";

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
      const std::string sub = path.empty() ? excerpt(k) : path + "." + excerpt(k);
      if (!a) out.push_back(sub + std::string(kMissingInCheckpoint) + excerpt(b->dump()));
      else if (!b) out.push_back(sub + ": checkpoint " + excerpt(a->dump()) + ", absent in this run");
      else config_differences(*a, *b, sub, out);
    }
    return;
  }
  if (!(found == expected))
    out.push_back(path + ": checkpoint " + excerpt(found.dump()) + ", this run " + excerpt(expected.dump()));
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
    if (it == meta.end()) throw CheckpointError(file, 8, "checkpoint: expected metadata " + quoted_excerpt(key));
    return it->second;
  };
  if (get("vitfreeze.format") != kCheckpointFormat)
    throw CheckpointError(file, 8, "checkpoint: expected format " + std::string(kCheckpointFormat) + ", found " +
                                       quoted_excerpt(get("vitfreeze.format")));
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
    if (std::all_of(diffs.begin(), diffs.end(), [](const std::string& d) { return d.find(kMissingInCheckpoint) != std::string::npos; }))
      what += "\n(only keys this run records are missing: the checkpoint was written by an older build that did "
              "not record them, so this build cannot check that it continues the same run; finish that run with "
              "the build that started it, or start afresh)";
    throw CheckpointMismatch(file, 8, what);
  }
  return r;
}

// ---- tensors --------------------------------------------------------------------------------------------

// A scalar I64 tensor.
inline void add_i64(SafetensorsWriter& w, std::string name, std::int64_t value) {
  w.add(std::move(name), Tensor<std::int64_t>::full(Shape{}, value));
}
inline std::int64_t get_i64(const SafetensorsReader& r, std::string_view name) {
  const auto t = r.get<std::int64_t>(name);
  if (t.numel() != 1)
    throw CheckpointError(r.source(), 8, "checkpoint: expected " + quoted_excerpt(name) + " to be one I64 value");
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

namespace detail {
enum class ValueRule { finite, finite_non_negative };

// "" when the n values read through at(i) obey `rule`, else how many do not and the first of them.
template <class At>
std::string invalid_values(std::int64_t n, At&& at, ValueRule rule) {
  std::int64_t bad = 0, first = -1;
  double first_value = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = double(at(i));
    if (std::isfinite(v) && (rule == ValueRule::finite || v >= 0)) continue;
    if (bad++ == 0) first = i, first_value = v;
  }
  if (bad == 0) return "";
  return std::to_string(bad) + " of " + std::to_string(n) + " values " +
         (rule == ValueRule::finite ? "are not finite" : "are negative or not finite") + " (element " +
         std::to_string(first) + " is " + std::to_string(first_value) + ")";
}

// The values of a file's tensor, whose dtype was checked to be T's (the data need not be aligned).
template <CpuScalar T>
std::string invalid_values(const SafetensorsReader& r, const std::string& name, ValueRule rule) {
  const auto bytes = r.bytes(name);
  return invalid_values(std::int64_t(bytes.size() / sizeof(T)), [&](std::int64_t i) {
    T v;
    std::memcpy(&v, bytes.data() + std::size_t(i) * sizeof(T), sizeof(T));
    return v;
  }, rule);
}
template <CpuScalar T>
std::string invalid_values(const Tensor<T>& t, ValueRule rule) {
  return invalid_values(t.numel(), [&](std::int64_t i) { return t[i]; }, rule);
}

inline void note_invalid(std::vector<std::string>& problems, const std::string& name, const std::string& what) {
  if (!what.empty()) problems.push_back(name + ": " + what);
}
inline void check_step_count(std::vector<std::string>& problems, const std::string& name, std::int64_t step,
                             std::int64_t max_step) {
  if (step < 1 || step > max_step)
    problems.push_back(name + ": AdamW step count " + std::to_string(step) + " outside [1, " + std::to_string(max_step) +
                       "] (the updates the run has made)");
}
}  // namespace detail

// Problems with the values of parameters and their AdamW state in memory (before a save that
// claims a good state): every parameter and moment finite, second moments >= 0, step counts in
// [1, max_step].
template <CpuScalar T, class Optimizer>
void check_values(const std::vector<Parameter<T>*>& params, const Optimizer& opt, std::int64_t max_step,
                  std::vector<std::string>& problems) {
  using detail::ValueRule;
  for (const auto* p : params) {
    detail::note_invalid(problems, p->name, detail::invalid_values(p->value, ValueRule::finite));
    const auto* s = opt.state(*p);
    if (!s || s->m.empty()) continue;
    detail::note_invalid(problems, "adam_m/" + p->name, detail::invalid_values(s->m, ValueRule::finite));
    detail::note_invalid(problems, "adam_v/" + p->name, detail::invalid_values(s->v, ValueRule::finite_non_negative));
    detail::check_step_count(problems, "adam_step/" + p->name, s->step, max_step);
  }
}

// Problems with the parameter tensors (and their optional AdamW state) in `r`, without changing
// anything: presence, dtype and shape, then the values as check_values() wants them.
// `frozen(p)` says whether the parameter will be frozen after loading (then it must have no state);
// `max_step` bounds the AdamW step counts (the optimiser updates the run has made).
template <CpuScalar T, class IsFrozen>
void check_parameters(const SafetensorsReader& r, const std::vector<Parameter<T>*>& params, IsFrozen&& frozen,
                      std::vector<std::string>& problems,
                      std::int64_t max_step = std::numeric_limits<std::int64_t>::max()) {
  using detail::ValueRule;
  std::set<std::string> known;
  // Values are read only from tensors whose dtype and shape are right.
  auto check_tensor = [&](const std::string& name, DType dtype, const std::vector<std::int64_t>& shape) {
    const std::size_t before = problems.size();
    expect_tensor(r, name, dtype, shape, problems);
    return problems.size() == before;
  };
  for (const auto* p : params) {
    if (!known.insert(p->name).second) throw ConfigError("checkpoint: two parameters named " + p->name);
    const std::string param = "param/" + p->name, m = "adam_m/" + p->name, v = "adam_v/" + p->name,
                      step = "adam_step/" + p->name;
    if (check_tensor(param, dtype_v<T>, detail::extents(file_shape_of(*p))))
      detail::note_invalid(problems, param, detail::invalid_values<T>(r, param, ValueRule::finite));
    if (!r.has(m) && !r.has(v) && !r.has(step)) continue;
    if (frozen(*p)) problems.push_back(p->name + ": AdamW state stored for a frozen parameter");
    if (check_tensor(m, dtype_v<T>, detail::extents(p->value.shape())))
      detail::note_invalid(problems, m, detail::invalid_values<T>(r, m, ValueRule::finite));
    if (check_tensor(v, dtype_v<T>, detail::extents(p->value.shape())))
      detail::note_invalid(problems, v, detail::invalid_values<T>(r, v, ValueRule::finite_non_negative));
    if (check_tensor(step, DType::i64, {})) detail::check_step_count(problems, step, get_i64(r, step), max_step);
  }
  for (const auto& name : r.names())
    for (std::string_view prefix : {"param/", "adam_m/", "adam_v/", "adam_step/"})
      if (name.starts_with(prefix) && !known.count(name.substr(prefix.size())))
        problems.push_back(quoted_excerpt(name) + ": in the checkpoint but not in the model");
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

// ---- the checkpoints of one run ---------------------------------------------------------------------

struct OpenedCheckpoint {
  std::filesystem::path path;
  SafetensorsReader reader;
};

// The checkpoints of one run in its directory. A file is the run's when it opens with the run's
// architecture and recipe (both checksums verified) and holds the iteration its name says. Only
// such files are ranked, counted and pruned; the verdict on every other file is kept (by inode,
// size and modification time), so a foreign or damaged file is read once per process, not at
// every save.
class RunCheckpoints {
 public:
  RunCheckpoints(std::filesystem::path dir, Json architecture, Json recipe)
      : dir_(std::move(dir)), architecture_(std::move(architecture)), recipe_(std::move(recipe)) {}

  const std::filesystem::path& dir() const { return dir_; }

  // `file` as one of this run's checkpoints. Damage, or a name that differs from the iteration
  // inside: CheckpointError; another model or recipe: CheckpointMismatch.
  SafetensorsReader open(const CheckpointFile& file) const {
    SafetensorsReader r = open_checkpoint(file.path, architecture_, recipe_);
    std::vector<std::string> problems;
    expect_tensor(r, "train/iteration", DType::i64, {}, problems);
    if (!problems.empty()) throw CheckpointError(file.path.string(), 8, "checkpoint: " + problems.front());
    if (const std::int64_t stored = get_i64(r, "train/iteration"); stored != file.iteration)
      throw CheckpointError(file.path.string(), 8, "checkpoint: the name says iteration " + std::to_string(file.iteration) +
                                                       ", the file holds iteration " + std::to_string(stored) +
                                                       " (renamed or copied by hand?)");
    return r;
  }

  // Writes ckpt-<iteration> atomically, then prunes: the file just written and the newest keep - 1
  // other checkpoints of this run stay (keep >= 1); files that are not the run's are never removed.
  std::filesystem::path write(std::int64_t iteration, const SafetensorsWriter& writer, int keep) {
    if (keep < 1) throw ConfigError("RunCheckpoints::write: keep must be >= 1, got " + std::to_string(keep));
    std::filesystem::create_directories(dir_);
    const auto path = dir_ / checkpoint_file_name(iteration);
    writer.write(path);
    if (const auto id = identity(path)) verdicts_[path.string()] = {*id, true};
    auto all = list_checkpoints(dir_);
    int kept = 1;
    std::error_code ec;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      if (it->path == path || !is_ours(*it)) continue;
      if (kept < keep) ++kept;
      else std::filesystem::remove(it->path, ec), verdicts_.erase(it->path.string());
    }
    remove_dead_writers_temporaries(dir_);
    return path;
  }

  // The newest checkpoint of this run, or nullopt when there is none. A damaged or renamed file is
  // reported to `warn` (a callable taking a CheckpointError) and skipped, as is a file of another
  // configuration when an older file of this run exists; when none is the run's but one was written
  // by another configuration, that file's CheckpointMismatch (every difference) is thrown: a changed
  // recipe would apply to all of them.
  template <class Warn>
  std::optional<OpenedCheckpoint> open_latest(Warn&& warn) {
    auto all = list_checkpoints(dir_);
    std::vector<CheckpointMismatch> mismatches;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      try {
        OpenedCheckpoint found{it->path, open(*it)};
        if (const auto id = identity(it->path)) verdicts_[it->path.string()] = {*id, true};
        for (const auto& m : mismatches) warn(m);
        return found;
      } catch (const CheckpointMismatch& e) {
        mismatches.push_back(e);
      } catch (const CheckpointError& e) {
        warn(e);
      }
    }
    if (!mismatches.empty()) throw mismatches.front();
    return std::nullopt;
  }

 private:
  struct Identity {
    std::uint64_t device = 0, inode = 0, size = 0;
    std::int64_t modified_ns = 0;
    friend bool operator==(const Identity&, const Identity&) = default;
  };
  static std::optional<Identity> identity(const std::filesystem::path& path) {
    struct ::stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return Identity{std::uint64_t(st.st_dev), std::uint64_t(st.st_ino), std::uint64_t(st.st_size),
                    std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  }

  bool is_ours(const CheckpointFile& file) {
    const auto id = identity(file.path);
    if (!id) return false;
    if (const auto it = verdicts_.find(file.path.string()); it != verdicts_.end() && it->second.first == *id)
      return it->second.second;
    bool ours = true;
    try {
      (void)open(file);
    } catch (const CheckpointError&) {
      ours = false;
    }
    verdicts_[file.path.string()] = {*id, ours};
    return ours;
  }

  std::filesystem::path dir_;
  Json architecture_, recipe_;
  std::map<std::string, std::pair<Identity, bool>> verdicts_;
};

}  // namespace vitfreeze::io
