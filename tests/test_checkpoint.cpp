// Checkpoints and weight interchange: header+data checksums catch every flipped byte; a mismatched
// configuration is refused with every difference listed before the model is touched; a writer killed
// with SIGKILL leaves the previous checkpoint loadable; resuming (fresh objects, or after a real
// SIGKILL of a training child) is bit-exact with a freeze event in the resumed window; the NaN
// policies; the step dump; timm/MAE export and all-or-nothing import.
#include <doctest/doctest.h>

#include "vitfreeze/testing/temp_dir.hpp"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/io/checkpoint.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/testing/resigned.hpp"
#include "vitfreeze/testing/tiny_pretraining.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;
namespace fs = std::filesystem;

namespace {
// One thread, set before any OpenMP region runs: results do not depend on the thread count, and a
// fork()ed child never inherits a thread pool it cannot use.
const bool kSingleThreaded = (cpu::set_thread_count(1), true);

using Run = vitfreeze::testing::TinyPretraining;  // one fresh run of the recipe per instance
using Objective = Run::Objective;
using Encoder = Run::Encoder;
constexpr int kEpochs = Run::kEpochs;  // x 6 batches: 18 steps; unit 0 freezes at g = 13, unit 1 at g = 16

using vitfreeze::testing::TempDir;

train::PretrainOptions run_options(const fs::path& dir = {}) { return Run::options(dir); }

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

// Parameters, trainable flags and AdamW state are identical bit for bit.
void check_same_state(Run& a, Run& b) {
  const auto pa = a.trainer.all_parameters(), pb = b.trainer.all_parameters();
  REQUIRE(pa.size() == pb.size());
  CHECK(a.adam.state_count() == b.adam.state_count());
  int mismatches = 0;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i]->name);
    if (!same_bits(pa[i]->value, pb[i]->value)) ++mismatches;
    CHECK(pa[i]->trainable == pb[i]->trainable);
    const auto* sa = a.adam.state(*pa[i]);
    const auto* sb = b.adam.state(*pb[i]);
    REQUIRE((sa == nullptr) == (sb == nullptr));
    if (sa) {
      CHECK(sa->step == sb->step);
      CHECK(same_bits(sa->m, sb->m));
      CHECK(same_bits(sa->v, sb->v));
    }
  }
  CHECK(mismatches == 0);
  CHECK(a.controller.state() == b.controller.state());
  CHECK(a.trainer.next_iteration() == b.trainer.next_iteration());
}

std::vector<Tensor<float>> snapshot(Run& r) {
  std::vector<Tensor<float>> out;
  for (auto* p : r.trainer.all_parameters()) out.push_back(p->value.clone());
  return out;
}
bool unchanged(Run& r, const std::vector<Tensor<float>>& before) {
  const auto ps = r.trainer.all_parameters();
  for (std::size_t i = 0; i < ps.size(); ++i)
    if (!same_bits(ps[i]->value, before[i])) return false;
  return true;
}

// The configuration of big_checkpoint's "run" (seed: another run's).
io::Json big_architecture() {
  io::Json arch = io::Json::object();
  arch.set("model", "big");
  return arch;
}
io::Json big_recipe(int seed = 1) {
  io::Json recipe = io::Json::object();
  recipe.set("seed", seed);
  return recipe;
}
io::RunCheckpoints big_run(const fs::path& dir, int seed = 1) { return {dir, big_architecture(), big_recipe(seed)}; }

// A checkpoint-shaped file whose tensor holds `step` everywhere (several MB, so writes take time).
io::SafetensorsWriter big_checkpoint(std::int64_t step, int seed = 1) {
  io::SafetensorsWriter w;
  io::add_checkpoint_config(w, big_architecture(), big_recipe(seed));
  w.add("param/w", Tensor<float>::full(Shape{1 << 20}, float(step)));
  io::add_i64(w, "train/iteration", step);
  return w;
}

std::vector<std::int64_t> iterations_in(const fs::path& dir) {
  std::vector<std::int64_t> out;
  for (const auto& c : io::list_checkpoints(dir)) out.push_back(c.iteration);
  return out;
}

// A copy of checkpoint `from` at `to` with `edit` applied to its tensors, signed afresh: it passes
// every integrity check and says something wrong.
template <class Edit>
fs::path crafted(const fs::path& from, const fs::path& to, Edit&& edit) {
  io::write_file_atomic(to, vitfreeze::testing::resigned(io::SafetensorsReader(from), edit));
  return to;
}
void set_i64(std::vector<io::TensorRecord>& records, std::string_view name, std::int64_t value) {
  vitfreeze::testing::set_element(vitfreeze::testing::record_named(records, name), 0, value);
}
}  // namespace

TEST_CASE("checkpoint names, scanning for the latest, pruning and stale temporaries") {
  CHECK(io::checkpoint_file_name(123) == "ckpt-000123.safetensors");
  CHECK(io::checkpoint_file_name(12345678) == "ckpt-12345678.safetensors");
  CHECK(io::parse_checkpoint_file_name("ckpt-000123.safetensors") == 123);
  CHECK_FALSE(io::parse_checkpoint_file_name("ckpt-000123.safetensors.tmp.77"));
  CHECK_FALSE(io::parse_checkpoint_file_name("ckpt-12.safetensors"));
  CHECK_FALSE(io::parse_checkpoint_file_name("ckpt-00001x.safetensors"));
  TempDir dir;
  auto run = big_run(dir.path());
  auto ignore = [](const CheckpointError&) {};
  CHECK_FALSE(run.open_latest(ignore));
  CHECK(io::list_checkpoints(dir / "absent").empty());
  for (std::int64_t s : {30, 5, 100, 7}) run.write(s, big_checkpoint(s), 10);
  CHECK(run.open_latest(ignore)->path == dir / "ckpt-000100.safetensors");  // by number, not by name order

  // A temporary of a dead writer is removed; one of a live process (this one) stays.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const fs::path dead = dir / ("ckpt-000101.safetensors.tmp." + std::to_string(child));
  const fs::path live = dir / ("ckpt-000102.safetensors.tmp." + std::to_string(::getpid()));
  io::write_file_atomic(dead, std::string_view("partial"));
  io::write_file_atomic(live, std::string_view("partial"));
  run.write(120, big_checkpoint(120), 2);
  CHECK(iterations_in(dir.path()) == std::vector<std::int64_t>{100, 120});
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK_THROWS_AS(run.write(130, big_checkpoint(130), 0), ConfigError);
}

TEST_CASE("pruning counts and removes only the run's own intact checkpoints, and the latest is cross-checked") {
  TempDir dir;
  auto run = big_run(dir.path());
  auto ignore = [](const CheckpointError&) {};
  SUBCASE("a garbage file is neither counted nor removed") {
    io::write_file_atomic(dir / "ckpt-000100.safetensors", std::string_view("garbage\n"));
    for (std::int64_t s : {1, 2, 3}) run.write(s, big_checkpoint(s), 1);
    CHECK(iterations_in(dir.path()) == std::vector<std::int64_t>{3, 100});
    CHECK(run.open_latest(ignore)->path == dir / "ckpt-000003.safetensors");
  }
  SUBCASE("an earlier, longer run's checkpoints (another recipe) do not push this run's out") {
    auto earlier = big_run(dir.path(), 2);
    for (std::int64_t s : {40, 50}) earlier.write(s, big_checkpoint(s, 2), 2);
    for (std::int64_t s : {1, 2, 3}) run.write(s, big_checkpoint(s), 2);
    CHECK(iterations_in(dir.path()) == std::vector<std::int64_t>{2, 3, 40, 50});
    CHECK(run.open_latest(ignore)->path == dir / "ckpt-000003.safetensors");  // the mismatched newer ones skipped
  }
  SUBCASE("with every other file corrupt (and named later), the new checkpoint survives its own pruning") {
    for (std::int64_t s : {50, 51}) {
      run.write(s, big_checkpoint(s), 5);
      auto bytes = io::read_file(dir / io::checkpoint_file_name(s));
      bytes[bytes.size() / 2] ^= std::byte{1};
      io::write_file_atomic(dir / io::checkpoint_file_name(s), bytes);
    }
    auto fresh = big_run(dir.path());  // another process: nothing known about the files
    fresh.write(12, big_checkpoint(12), 1);
    CHECK(iterations_in(dir.path()) == std::vector<std::int64_t>{12, 50, 51});
    CHECK(fresh.open_latest(ignore)->path == dir / "ckpt-000012.safetensors");
  }
  SUBCASE("a file renamed to a later name is not ranked by its name") {
    for (std::int64_t s : {16, 20}) run.write(s, big_checkpoint(s), 5);
    fs::copy_file(dir / "ckpt-000016.safetensors", dir / "ckpt-000099.safetensors");
    std::vector<std::string> warnings;
    const auto latest = run.open_latest([&](const CheckpointError& e) { warnings.push_back(e.what()); });
    CHECK(latest->path == dir / "ckpt-000020.safetensors");
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("the name says iteration 99, the file holds iteration 16") != std::string::npos);
    run.write(21, big_checkpoint(21), 1);  // the renamed file is not the run's: kept, not counted
    CHECK(iterations_in(dir.path()) == std::vector<std::int64_t>{21, 99});
  }
  SUBCASE("only another configuration's checkpoints: resume names every difference") {
    big_run(dir.path(), 2).write(5, big_checkpoint(5, 2), 2);
    CHECK_THROWS_WITH_AS(run.open_latest(ignore), doctest::Contains("recipe.seed: checkpoint 2, this run 1"),
                         io::CheckpointMismatch);
  }
}

TEST_CASE("safetensors header checksum: every flipped byte of a checkpoint is detected") {
  const std::vector<std::byte> good = big_checkpoint(3).to_bytes();
  const io::SafetensorsReader ok(good, "good");
  CHECK(ok.header_checksum_verified());
  CHECK(ok.data_checksum_verified());
  const std::uint64_t header = 8 + [&] {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(good[std::size_t(i)]);
    return n;
  }();
  // Every byte of the length field and header (metadata, names, shapes, offsets, padding) with two
  // different flips, and a sample of data bytes.
  int escaped = 0;
  std::vector<std::size_t> positions;
  for (std::size_t i = 0; i < header; ++i) positions.push_back(i);
  for (std::size_t i = header; i < good.size(); i += 4099) positions.push_back(i);
  for (std::size_t i : positions)
    for (std::byte flip : {std::byte{0x01}, std::byte{0x20}}) {
      auto f = good;
      f[i] ^= flip;
      try {
        io::SafetensorsReader r(std::move(f), "flipped");
        if (!r.header_checksum_verified() || !r.data_checksum_verified()) throw CheckpointError("x", 0, "unverified");
        ++escaped;
      } catch (const CheckpointError&) {
      }
    }
  CHECK(escaped == 0);

  // Another tool's header (re-serialised with a space) no longer carries a checkable checksum.
  std::string h = big_checkpoint(3).header();
  h.insert(h.find("\"vitfreeze.header_crc32c\":") + 26, " ");
  std::vector<std::byte> respaced(8);
  for (int i = 0; i < 8; ++i) respaced[std::size_t(i)] = std::byte((h.size() >> (8 * i)) & 0xff);
  for (char c : h) respaced.push_back(std::byte(c));
  respaced.insert(respaced.end(), good.begin() + std::ptrdiff_t(header), good.end());
  CHECK_THROWS_WITH_AS(io::SafetensorsReader(respaced, "respaced"), doctest::Contains("written exactly once"),
                       CheckpointError);
  // The writer drops a stale checksum given as metadata and recomputes it.
  io::SafetensorsWriter w;
  w.add_metadata(std::string(io::kHeaderChecksumKey), "deadbeef");
  w.add_metadata(std::string(io::kChecksumKey), "deadbeef");
  w.add("x", Tensor<float>::full({2}, 1.0f));
  CHECK(io::SafetensorsReader(w.to_bytes(), "rewritten").header_checksum_verified());
}

TEST_CASE("checkpoint configuration: a different recipe or architecture is refused, listing every difference") {
  TempDir dir;
  Run a(run_options(dir.path()));
  a.steps(0, 2);
  const fs::path file = a.trainer.save_checkpoint();
  CHECK(file.filename() == "ckpt-000002.safetensors");

  auto opt = run_options(dir.path());
  opt.seed = 6;
  opt.recipe.set("batch", 16);
  Run b(opt);
  const auto before = snapshot(b);
  try {
    b.trainer.load_checkpoint(file);
    FAIL("expected a CheckpointMismatch");
  } catch (const io::CheckpointMismatch& e) {
    const std::string what = e.what();
    CHECK(what.find("recipe.seed: checkpoint 5, this run 6") != std::string::npos);
    CHECK(what.find("recipe.batch: checkpoint 8, this run 16") != std::string::npos);
    CHECK(what.find("2 differences") != std::string::npos);
    CHECK(e.file() == file.string());
  }
  CHECK(unchanged(b, before));
  CHECK(b.trainer.next_iteration() == 0);

  io::Json arch = a.trainer.architecture();
  arch.set("depth", 3);
  arch.set("objective", "localmim");
  try {
    (void)io::open_checkpoint(file, arch, a.trainer.recipe());
    FAIL("expected a CheckpointMismatch");
  } catch (const io::CheckpointMismatch& e) {
    CHECK(std::string(e.what()).find("architecture.depth: checkpoint 2, this run 3") != std::string::npos);
    CHECK(std::string(e.what()).find("architecture.objective: checkpoint \"mae\", this run \"localmim\"") != std::string::npos);
  }
  // A plain weights file (no checksums, no config) is not a checkpoint.
  io::export_encoder(a.encoder, dir / "encoder.safetensors");
  CHECK_THROWS_AS(b.trainer.load_checkpoint(dir / "encoder.safetensors"), CheckpointError);
}

TEST_CASE("a corrupt checkpoint is refused before anything is restored") {
  TempDir dir;
  Run a(run_options(dir.path()));
  a.steps(0, 3);
  const fs::path file = a.trainer.save_checkpoint();
  auto bytes = io::read_file(file);
  for (std::size_t at : {std::size_t(40), bytes.size() / 2, bytes.size() - 1}) {
    CAPTURE(at);
    auto f = bytes;
    f[at] ^= std::byte{0x04};
    io::write_file_atomic(dir / "bad.safetensors", f);
    Run b(run_options(dir.path()));
    const auto before = snapshot(b);
    CHECK_THROWS_AS(b.trainer.load_checkpoint(dir / "bad.safetensors"), CheckpointError);
    CHECK(unchanged(b, before));
  }
  // A truncated newest checkpoint is skipped by resume("auto") with a warning; the older one loads.
  a.steps(3, 4);
  const fs::path newest = a.trainer.save_checkpoint();
  bytes = io::read_file(newest);
  bytes.resize(bytes.size() / 2);
  io::write_file_atomic(newest, bytes);
  Run c(run_options(dir.path()));
  CHECK(c.trainer.resume("auto") == file);
  CHECK(c.trainer.next_iteration() == 3);
}

TEST_CASE("a writer killed with SIGKILL at random times leaves the newest complete checkpoint loadable") {
  TempDir dir;
  std::int64_t next_step = 1, last_seen = 0;
  for (int round = 0; round < 6; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      auto run = big_run(dir.path());
      for (std::int64_t s = next_step;; ++s) run.write(s, big_checkpoint(s), 2);
      ::_exit(0);
    }
    // On a loaded machine the first write may take a while: the first round waits for one file.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (io::list_checkpoints(dir.path()).empty() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    RandomStream rng(9, RngPurpose::test, std::uint64_t(round));
    std::this_thread::sleep_for(std::chrono::microseconds(20000 + rng.below(60000)));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    // Every checkpoint present verifies, the newest holds its own step, and steps only grow.
    const auto all = io::list_checkpoints(dir.path());
    REQUIRE_FALSE(all.empty());
    for (const auto& c : all) {
      const auto r = io::open_checkpoint(c.path, big_architecture(), big_recipe());
      CHECK(io::get_i64(r, "train/iteration") == c.iteration);
      CHECK(r.get_f32("param/w")[12345] == float(c.iteration));
    }
    CHECK(all.back().iteration >= last_seen);
    last_seen = all.back().iteration;
    next_step = last_seen + 1;
  }
  io::remove_dead_writers_temporaries(dir.path());
  for (const auto& e : fs::directory_iterator(dir.path()))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);  // the dead writers' temporaries are gone
  MESSAGE("checkpoints written across 6 killed writers: " << last_seen);
}

TEST_CASE("exact resume with fresh objects: k steps + checkpoint + k more == 2k steps, bit for bit") {
  Run straight;
  straight.trainer.fit(straight.loader);
  REQUIRE_FALSE(straight.controller.is_active(1));  // both freezes happened (g = 13 and g = 16)
  for (std::int64_t k : {9, 14}) {  // before both freezes (9 = 2k = 18); after the first
    CAPTURE(k);
    TempDir dir;
    {
      Run first(run_options(dir.path()));
      first.steps(0, k);
      first.trainer.save_checkpoint();
    }  // everything destroyed
    Run second(run_options(dir.path()));
    REQUIRE(second.trainer.resume("auto") == dir / io::checkpoint_file_name(k));
    CHECK(second.controller.is_active(0) == (k <= 13));
    CHECK(second.encoder.patch_embed.proj.weight.trainable == (k <= 13));
    second.trainer.fit(second.loader);
    check_same_state(straight, second);
  }
}

TEST_CASE("exact resume after a real SIGKILL of a training process") {
  Run straight;
  straight.trainer.fit(straight.loader);
  TempDir dir;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      auto opt = run_options(dir.path());
      opt.checkpoint_every_steps = 1;
      opt.keep_checkpoints = 3;
      Run r(opt);
      r.trainer.fit(r.loader);
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  // Kill as soon as a checkpoint at iteration >= 5 exists: usually mid-step or mid-write.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    const auto all = io::list_checkpoints(dir.path());
    if ((!all.empty() && all.back().iteration >= 5) || std::chrono::steady_clock::now() > deadline) break;
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  const auto latest = io::list_checkpoints(dir.path());
  REQUIRE_FALSE(latest.empty());
  MESSAGE("child " << std::string(WIFSIGNALED(status) ? "killed" : "finished") << "; resuming from iteration "
                   << latest.back().iteration << " of 18");
  Run resumed(run_options(dir.path()));
  REQUIRE(resumed.trainer.resume("auto"));
  CHECK(resumed.trainer.next_iteration() >= 5);
  resumed.trainer.fit(resumed.loader);
  check_same_state(straight, resumed);
}

TEST_CASE("a run with gradient accumulation resumes exactly (its last controller step is a window back)") {
  auto accumulating = [](const fs::path& dir) {
    auto o = run_options(dir);
    o.accumulation = 2;
    return o;
  };
  Run straight(accumulating({}));
  straight.trainer.fit(straight.loader);
  for (std::int64_t k : {8, 14}) {  // before both freezes; after the first (at the window starting at 14)
    CAPTURE(k);
    TempDir dir;
    {
      Run first(accumulating(dir.path()));
      first.steps(0, k);
      first.trainer.save_checkpoint();
    }
    Run second(accumulating(dir.path()));
    REQUIRE(second.trainer.resume("auto") == dir / io::checkpoint_file_name(k));
    second.trainer.fit(second.loader);
    check_same_state(straight, second);
  }
}

TEST_CASE("a resumed run reports its whole history: the finished epochs and the one it resumed in") {
  Run straight;
  const auto all = straight.trainer.fit(straight.loader);
  REQUIRE(all.size() == std::size_t(kEpochs));
  TempDir dir;
  {
    auto opt = run_options(dir.path());
    opt.checkpoint_every_steps = 1;
    opt.keep_checkpoints = 20;
    Run first(opt);
    first.trainer.fit(first.loader);
  }
  for (std::int64_t k : {9, 12, 18}) {  // in epoch 1, at the end of epoch 1, at the end of the run
    CAPTURE(k);
    Run resumed(run_options(dir.path()));
    resumed.trainer.load_checkpoint(dir / io::checkpoint_file_name(k));
    const auto history = resumed.trainer.fit(resumed.loader);
    REQUIRE(history.size() == all.size());
    for (std::size_t e = 0; e < all.size(); ++e) {
      CAPTURE(e);
      CHECK(history[e].epoch == all[e].epoch);
      CHECK(history[e].mean_loss == all[e].mean_loss);  // the same losses summed in the same order
      CHECK(history[e].first_active_unit == all[e].first_active_unit);
      CHECK(history[e].seconds > 0);
    }
  }
}

TEST_CASE("a correctly checksummed checkpoint that says something impossible is refused, nothing restored") {
  using vitfreeze::testing::record_named;
  using vitfreeze::testing::set_element;
  TempDir dir;
  Run a(run_options(dir.path()));
  a.steps(0, 14);  // unit 0 froze at 13; unit 1 (block 0) trains, with AdamW state
  const fs::path good = a.trainer.save_checkpoint();
  const std::string qkv = "blocks.0.attn.qkv.weight";
  using Records = std::vector<io::TensorRecord>;
  const std::vector<std::pair<std::function<void(Records&)>, std::string>> cases = {
      {[&](Records& r) { set_element(record_named(r, "param/" + qkv), 3, float(NAN)); },
       "param/" + qkv + ": 1 of 768 values are not finite (element 3"},
      {[&](Records& r) { set_element(record_named(r, "adam_m/" + qkv), 0, float(INFINITY)); }, "adam_m/" + qkv + ": 1 of"},
      {[&](Records& r) { set_element(record_named(r, "adam_v/" + qkv), 5, -1.0f); },
       "adam_v/" + qkv + ": 1 of 768 values are negative or not finite"},
      {[&](Records& r) { set_i64(r, "adam_step/" + qkv, -3); }, "AdamW step count -3 outside [1, 14]"},
      {[&](Records& r) { set_i64(r, "adam_step/" + qkv, 15); }, "AdamW step count 15 outside [1, 14]"},
      {[&](Records& r) { set_i64(r, "train/batch", 1); }, "train/epoch, train/batch: not the position"},
      {[&](Records& r) { set_i64(r, "train/iteration", 12), set_i64(r, "train/epoch", 2), set_i64(r, "train/batch", 0); },
       "freeze/last_step: not the first micro-batch"},
      {[&](Records& r) { set_i64(r, "train/iteration", 19); }, "train/iteration: outside the run [0, 18]"},
      {[&](Records& r) { set_i64(r, "train/skipped_steps", -1); }, "train/skipped_steps: -1"},
      {[&](Records& r) { set_element(record_named(r, "freeze/frozen"), 0, std::uint8_t(0)); },
       "freeze/frozen: 0 units frozen, the schedule has 1"},
      {[&](Records& r) { set_element(record_named(r, "freeze/frozen"), 0, std::uint8_t(7)); }, "holds 7, not 0 or 1"},
      {[&](Records& r) { set_element(record_named(r, "freeze/frozen"), 2, std::uint8_t(1)); }, "not a prefix"},
      {[&](Records& r) { set_element(record_named(r, "train/epoch_progress"), 1, 5.0); },
       "train/epoch_progress: not the sums of the 2 micro-batches"},
      // Counts that do not fit an integer are refused before they are converted (a fuzz finding:
      // the conversion of a NaN count was undefined behaviour).
      {[&](Records& r) { set_element(record_named(r, "train/epoch_progress"), 2, double(NAN)); },
       "train/epoch_progress: not the sums of the 2 micro-batches"},
      {[&](Records& r) { set_element(record_named(r, "train/epoch_progress"), 1, 1e300); },
       "train/epoch_progress: not the sums of the 2 micro-batches"},
  };
  Run control(run_options(dir.path()));
  CHECK_NOTHROW(control.trainer.load_checkpoint(crafted(good, dir / "copy.safetensors", [](Records&) {})));
  // A checkpoint of an older build carries no history: it still loads, the history starting there.
  Run older(run_options(dir.path()));
  CHECK_NOTHROW(older.trainer.load_checkpoint(crafted(good, dir / "older.safetensors", [](Records& r) {
    std::erase_if(r, [](const io::TensorRecord& t) { return t.name == "train/history" || t.name == "train/epoch_progress"; });
  })));
  CHECK(older.trainer.next_iteration() == 14);
  CHECK(older.trainer.history().empty());
  for (const auto& [edit, expected] : cases) {
    CAPTURE(expected);
    Run b(run_options(dir.path()));
    const auto before = snapshot(b);
    CHECK_THROWS_WITH_AS(b.trainer.load_checkpoint(crafted(good, dir / "crafted.safetensors", edit)),
                         doctest::Contains(expected.c_str()), io::CheckpointMismatch);
    CHECK(unchanged(b, before));
    CHECK(b.trainer.next_iteration() == 0);
  }
}

TEST_CASE("a state that is not finite is never saved, not even as the last good state") {
  TempDir dir;
  Run a(run_options(dir.path()));
  a.steps(0, 3);
  a.objective.decoder.pred.weight.value[0] = NAN;  // what an update with an infinite LR leaves (test hook)
  CHECK_THROWS_WITH_AS(a.trainer.save_checkpoint(), doctest::Contains("decoder_pred.weight: 1 of"), NumericError);
  a.loader.start_epoch(0, 3);
  try {
    a.trainer.step(a.loader.next()->images, 3);
    FAIL("expected a NumericError");
  } catch (const NumericError& e) {
    CHECK(std::string(e.what()).find("no good state to save") != std::string::npos);
  }
  CHECK(io::list_checkpoints(dir.path()).empty());
}

TEST_CASE("non-finite policy: stop saves the last good state, skip counts and goes on") {
  const Tensor<float> bad = Tensor<float>::full(Shape{8, 1, 8, 8}, NAN);
  SUBCASE("stop") {
    TempDir dir;
    Run a(run_options(dir.path()));
    a.steps(0, 3);
    const auto before = snapshot(a);
    try {
      a.trainer.step(bad, 3);
      FAIL("expected a NumericError");
    } catch (const NumericError& e) {
      CHECK(std::string(e.what()).find("iteration 3") != std::string::npos);
      CHECK(std::string(e.what()).find("ckpt-000003.safetensors") != std::string::npos);
    }
    CHECK(unchanged(a, before));
    // The saved state is the one before the bad step, and training resumes from it exactly.
    Run b(run_options(dir.path()));
    REQUIRE(b.trainer.resume("auto") == dir / "ckpt-000003.safetensors");
    CHECK(b.trainer.next_iteration() == 3);
    check_same_state(a, b);
    a.steps(3, 5);
    b.steps(3, 5);
    check_same_state(a, b);
  }
  SUBCASE("skip") {
    auto opt = run_options();
    opt.non_finite = train::NonFinitePolicy::skip;
    opt.max_skipped_steps = 2;
    Run a(opt);
    a.steps(0, 2);
    const auto before = snapshot(a);
    CHECK(std::isnan(a.trainer.step(bad, 2)));
    CHECK(a.trainer.skipped_steps() == 1);
    CHECK(unchanged(a, before));
    CHECK(a.trainer.next_iteration() == 3);
    a.steps(3, 4);  // trains normally again
    CHECK_FALSE(unchanged(a, before));
    // A NaN parameter (test hook: set one by hand) poisons every step: skipped until the limit.
    a.objective.decoder.pred.weight.value[0] = NAN;
    CHECK(std::isnan(a.trainer.step(a.loader.next()->images, 4)));
    CHECK(a.trainer.skipped_steps() == 2);
    CHECK_THROWS_AS(a.trainer.step(a.loader.next()->images, 5), NumericError);
  }
}

TEST_CASE("--dump-step: input, mask, loss, parameters before the update and gradients") {
  TempDir dir;
  auto opt = run_options();
  opt.dump_step = dir / "step.safetensors";
  opt.dump_iteration = 1;
  Run a(opt);
  a.steps(0, 1);
  CHECK_FALSE(fs::exists(opt.dump_step));
  a.loader.start_epoch(0, 1);
  const auto batch = a.loader.next();
  const auto before = snapshot(a);
  const double loss = a.trainer.step(batch->images, 1);
  const io::SafetensorsReader r(opt.dump_step);
  CHECK(r.info("input").shape == std::vector<std::int64_t>{8, 1, 8, 8});
  CHECK(same_bits(r.get<float>("input"), batch->images));
  const auto mask = r.get<std::uint8_t>("mask");
  REQUIRE(mask.shape() == Shape{8, 4});
  for (int b = 0; b < 8; ++b) CHECK(mask.at(b, 0) + mask.at(b, 1) + mask.at(b, 2) + mask.at(b, 3) == 3);  // 75 % of 4
  CHECK(r.get<float>("loss")[0] == float(loss));
  CHECK(r.get<float>("loss").rank() == 0);
  const auto ps = a.trainer.all_parameters();
  for (std::size_t i = 0; i < ps.size(); ++i) {
    CAPTURE(ps[i]->name);
    CHECK(same_bits(r.get<float>("param/" + ps[i]->name), before[i]));
    REQUIRE(r.has("grad/" + ps[i]->name));
  }
  CHECK(r.info("param/patch_embed.proj.weight").shape == std::vector<std::int64_t>{16, 1, 4, 4});
  CHECK(r.info("grad/decoder_pred.weight").shape == std::vector<std::int64_t>{16, 8});
  CHECK(r.metadata().at("vitfreeze.objective") == "mae");
  const auto spec = io::Json::parse(r.metadata().at("vitfreeze.spec"));
  CHECK(spec.at("dim").as_int() == 16);
  CHECK(spec.at("depth").as_int() == 2);
  // Enough to rebuild the objective from the file alone: decoder, target and masking.
  const auto objective = io::Json::parse(r.metadata().at("vitfreeze.objective_spec"));
  CHECK(objective.at("decoder").at("dim").as_int() == 8);
  CHECK(objective.at("decoder").at("depth").as_int() == 1);
  CHECK(objective.at("decoder").at("heads").as_int() == 2);
  CHECK(objective.at("decoder").at("mlp_ratio").as_int() == 2);
  CHECK(objective.at("target").at("kind").as_string() == "normalised-pixels");
  CHECK(objective.at("target").at("values_per_cell").as_int() == 16);
  CHECK(objective.at("target").at("norm_pix").as_bool());
  const auto masking = io::Json::parse(r.metadata().at("vitfreeze.masking"));
  CHECK(masking.at("ratio").as_double() == 0.75);
  CHECK(masking.at("visible_patches").as_int() == 1);
}

TEST_CASE("timm/MAE weights: export, import round trip, and all-or-nothing refusal") {
  TempDir dir;
  Encoder a(1), b(2);
  Objective oa(3), ob(4);
  io::export_encoder(a, dir / "enc.safetensors");
  {
    const io::SafetensorsReader r(dir / "enc.safetensors");
    CHECK(r.info("pos_embed").shape == std::vector<std::int64_t>{1, 5, 16});
    CHECK(r.info("cls_token").shape == std::vector<std::int64_t>{1, 1, 16});
    CHECK(r.info("patch_embed.proj.weight").shape == std::vector<std::int64_t>{16, 1, 4, 4});
    CHECK(r.info("blocks.1.attn.qkv.weight").shape == std::vector<std::int64_t>{48, 16});
    CHECK(r.info("blocks.1.mlp.fc1.weight").shape == std::vector<std::int64_t>{32, 16});
    CHECK(r.has("norm.bias"));
    CHECK(r.names().size() == 1 + 2 + 2 * 12 + 2 + 1);  // cls, patch embed, blocks, norm, pos_embed
    CHECK(r.metadata().at("format") == "pt");
    // pos_embed: zero cls row, then sin(0) = 0, cos(0) = 1 for patch (0, 0).
    const auto pos = r.get_f32("pos_embed");
    CHECK(pos[0] == 0.0f);
    CHECK(pos[16 + 0] == 0.0f);
    CHECK(pos[16 + 4] == 1.0f);
  }
  const auto report = io::import_encoder(b, dir / "enc.safetensors");
  CHECK(report.loaded.size() == a.parameters().size());
  CHECK(report.unused.empty());
  for (std::size_t i = 0; i < a.parameters().size(); ++i) CHECK(same_bits(a.parameters()[i]->value, b.parameters()[i]->value));

  // A full MAE state: decoder names of facebookresearch/mae; the encoder import ignores them.
  io::export_pretraining(a, oa, dir / "mae.safetensors");
  {
    const io::SafetensorsReader r(dir / "mae.safetensors");
    for (const char* n : {"decoder_embed.weight", "mask_token", "decoder_blocks.0.attn.qkv.weight", "decoder_norm.weight",
                          "decoder_pred.weight", "decoder_pred.bias"})
      CHECK_MESSAGE(r.has(n), n);
    CHECK(r.info("decoder_pos_embed").shape == std::vector<std::int64_t>{1, 5, 8});
    CHECK(r.info("decoder_pred.weight").shape == std::vector<std::int64_t>{16, 8});
    Encoder c(5);
    const auto rep = io::import_encoder(c, r);
    CHECK(rep.unused.size() == oa.decoder.blocks.size() * 12 + 2 + 1 + 2 + 2 + 1);  // + decoder_pos_embed
    Objective od(6);
    io::import_pretraining(c, od, r);
    CHECK(same_bits(od.decoder.pred.weight.value, oa.decoder.pred.weight.value));
    CHECK(same_bits(od.decoder.mask_token.value, oa.decoder.mask_token.value));
  }

  // Wrong shape, missing names, a learned pos_embed: all listed in one error, nothing written.
  const io::SafetensorsReader good(dir / "enc.safetensors");
  io::SafetensorsWriter w;
  for (const auto& name : good.names()) {
    if (name == "norm.bias" || name == "blocks.0.attn.proj.weight") continue;
    auto rec = good.record(name);
    if (name == "blocks.1.mlp.fc2.weight") rec = io::TensorRecord{name, DType::f32, {16, 16}, std::vector<std::byte>(16 * 16 * 4)};
    w.add(std::move(rec));
  }
  w.write(dir / "bad.safetensors");
  Encoder d(7);
  const auto before = d.parameters()[5]->value.clone();
  try {
    io::import_encoder(d, dir / "bad.safetensors");
    FAIL("expected a CheckpointMismatch");
  } catch (const io::CheckpointMismatch& e) {
    const std::string what = e.what();
    CHECK(what.find("norm.bias: missing") != std::string::npos);
    CHECK(what.find("blocks.0.attn.proj.weight: missing (expected [16, 16])") != std::string::npos);
    CHECK(what.find("blocks.1.mlp.fc2.weight: file has F32 [16, 16], expected a floating dtype [16, 32]") != std::string::npos);
    CHECK(what.find("3 problems") != std::string::npos);
  }
  CHECK(same_bits(d.parameters()[5]->value, before));

  io::SafetensorsWriter learned;
  for (const auto& name : good.names()) {
    auto rec = good.record(name);
    if (name == "pos_embed") rec.data[4 * 20 + 3] ^= std::byte{0x01};  // an exponent bit of element 20
    learned.add(std::move(rec));
  }
  learned.write(dir / "learned.safetensors");
  CHECK_THROWS_WITH_AS(io::import_encoder(d, dir / "learned.safetensors"),
                       doctest::Contains("learned position embeddings are not supported"), io::CheckpointMismatch);
  CHECK_NOTHROW(io::import_encoder(d, dir / "learned.safetensors", {.check_position_tables = false}));
}
