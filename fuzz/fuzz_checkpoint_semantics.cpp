// Fuzz target: checkpoint *semantics*. Corrupt bytes are caught by the checksums (fuzz_checkpoint);
// this target asks what happens to files that pass them and say something wrong. The input is a
// list of edits to a real checkpoint of testing::TinyPretraining (taken after 8 steps, with or without
// gradient accumulation, the first byte chooses): iteration, epoch, batch, last step, skipped
// steps, frozen flags, parameter and AdamW values and step counts, the history; edits set small
// integers, any 64-bit value, NaN or infinities, or delete a tensor. The result is signed afresh
// and loaded into a fresh trainer of the same recipe. Findings: anything but a typed error; a
// refused file that changed the trainer; an accepted one that leaves a state no run can be in
// (position, frozen prefix, values, optimiser state), or whose next step fails other than with a
// typed error.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/testing/resigned.hpp"
#include "vitfreeze/testing/tiny_pretraining.hpp"

namespace {
using namespace vitfreeze;
using Tiny = testing::TinyPretraining;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: %s\n", what);
  std::abort();
}

train::PretrainOptions options(int accumulation) {
  auto o = Tiny::options();
  o.accumulation = accumulation;
  return o;
}

// The checkpoint each accumulation starts from (8 steps: every unit trains, with AdamW state).
const std::vector<std::byte>& base_checkpoint(int accumulation) {
  static const std::vector<std::byte> bases[2] = {[] {
                                                    Tiny run(options(1));
                                                    run.steps(0, 8);
                                                    return run.trainer.checkpoint_writer().to_bytes();
                                                  }(),
                                                  [] {
                                                    Tiny run(options(2));
                                                    run.steps(0, 8);
                                                    return run.trainer.checkpoint_writer().to_bytes();
                                                  }()};
  return bases[accumulation - 1];
}

// Reads the input front to back; past its end every read is 0.
struct Input {
  const std::uint8_t* data;
  std::size_t size, at = 0;
  bool done() const { return at >= size; }
  std::uint8_t byte() { return at < size ? data[at++] : 0; }
  std::uint64_t bits(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | byte();
    return v;
  }
  // A value worth trying for an element of dtype size `width`: small, extreme or arbitrary.
  double number() {
    switch (byte() % 8) {
      case 0: return double(std::int8_t(byte()));
      case 1: return std::numeric_limits<double>::quiet_NaN();
      case 2: return byte() & 1 ? INFINITY : -INFINITY;
      case 3: return -double(byte()) / 16;
      case 4: return double(std::int64_t(bits(8)));
      case 5: return std::ldexp(double(bits(2)), int(std::int8_t(byte())));
      default: return double(byte());
    }
  }
};

void set_number(io::TensorRecord& r, std::size_t index, double v, Input& in) {
  const std::size_t width = dtype_size(r.dtype), n = r.data.size() / width;
  if (n == 0) return;
  index %= n;
  switch (r.dtype) {
    case DType::f32: testing::set_element(r, index, float(v)); break;
    case DType::f64: testing::set_element(r, index, v); break;
    case DType::i64:
      testing::set_element(r, index, std::isfinite(v) && std::abs(v) < 9e18 ? std::int64_t(v) : std::int64_t(in.bits(8)));
      break;
    case DType::u8: testing::set_element(r, index, std::uint8_t(in.byte() % 3)); break;
    default: break;
  }
}

void edit(std::vector<io::TensorRecord>& records, Input& in) {
  while (!in.done() && !records.empty()) {
    const std::uint8_t op = in.byte();
    const std::size_t which = in.byte() % records.size();
    if (op % 16 == 15) {  // drop a tensor
      records.erase(records.begin() + std::ptrdiff_t(which));
      continue;
    }
    const std::size_t index = std::size_t(in.bits(2));
    set_number(records[which], index, in.number(), in);
  }
}

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

// What a state that a run could be in looks like (after a successful load).
void check_loaded(Tiny& run, int accumulation) {
  const std::int64_t next = run.trainer.next_iteration();
  const auto& length = run.controller.run();
  require(next >= 0 && next <= length.total_iterations() && next % accumulation == 0, "loaded an impossible position");
  const auto state = run.controller.state();
  int frozen = 0;
  while (frozen < run.controller.units() && state.frozen[std::size_t(frozen)]) ++frozen;
  require(frozen == run.controller.frozen_units_at(state.last_step), "loaded a frozen prefix the schedule does not have");
  std::vector<std::string> problems;
  io::check_values(run.trainer.all_parameters(), run.adam, next / accumulation, problems);
  require(problems.empty(), "loaded values that are not a good state");
  require(run.trainer.history().size() <= std::size_t(next / Tiny::kStepsPerEpoch), "loaded a history of unfinished epochs");
  if (next < length.total_iterations()) {
    try {
      run.trainer.step(run.batch(next), next);
    } catch (const Error&) {  // a finite but huge value may still overflow a loss: typed, fine
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool single_thread = (cpu::set_thread_count(1), true);
  (void)single_thread;
  Input in{data, size};
  const int accumulation = 1 + (in.byte() & 1);
  const io::SafetensorsReader base(base_checkpoint(accumulation), "base");
  const auto crafted = testing::resigned(base, [&](std::vector<io::TensorRecord>& records) { edit(records, in); });
  const auto& path = fuzz::scratch_path("checkpoint-semantics");
  fuzz::write_scratch(path, crafted.data(), crafted.size());

  Tiny run(options(accumulation));
  std::vector<Tensor<float>> before;
  for (auto* p : run.trainer.all_parameters()) before.push_back(p->value.clone());
  try {
    run.trainer.load_checkpoint(path);
  } catch (const Error&) {
    const auto params = run.trainer.all_parameters();
    for (std::size_t i = 0; i < params.size(); ++i) require(same_bits(params[i]->value, before[i]), "a refused checkpoint changed the model");
    require(run.trainer.next_iteration() == 0 && run.adam.state_count() == 0, "a refused checkpoint changed the trainer");
    return 0;
  }
  check_loaded(run, accumulation);
  return 0;
}
