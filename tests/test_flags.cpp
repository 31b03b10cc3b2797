// The example executables' flags (examples/pretrain_flags.hpp, schedule_flags.hpp): numbers parsed
// strictly and within range, errors naming the flag, one syntax for booleans in both executables,
// each schedule's published t0, and the checks between flags.
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "../examples/pretrain_flags.hpp"
#include "../examples/schedule_flags.hpp"

using namespace vitfreeze;
using namespace vitfreeze::examples;

namespace {
// argv for the parsers: the program name, then `args`.
struct Argv {
  std::vector<std::string> words;
  std::vector<const char*> pointers;
  explicit Argv(std::initializer_list<std::string> args) : words{"prog"} {
    words.insert(words.end(), args);
    for (const auto& w : words) pointers.push_back(w.c_str());
  }
  int argc() const { return int(pointers.size()); }
  const char* const* argv() const { return pointers.data(); }
};

PretrainFlags pretrain(std::initializer_list<std::string> args, Backend backend = Backend::cpu) {
  const Argv a(args);
  auto f = parse_pretrain_flags(a.argc(), a.argv(), backend, "test");
  REQUIRE(f);
  return *f;
}
ScheduleFlags schedule(std::initializer_list<std::string> args) {
  const Argv a(args);
  auto f = parse_schedule_flags(a.argc(), a.argv());
  REQUIRE(f);
  return *f;
}
}  // namespace

TEST_CASE("flags: numbers are parsed strictly, within their range, and errors name the flag") {
  for (const char* bad : {"nan", "inf", "-inf", "1e30", "-1", "2.7", "1e3", "0x10", " 3", "3 ", "+3", "", "100001",
                          "99999999999999999999"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(pretrain({"--epochs", bad}), doctest::Contains("--epochs: expected an integer in [0, 100000]"),
                         ConfigError);
  }
  CHECK(pretrain({"--epochs", "7"}).epochs == 7);
  CHECK(pretrain({"--epochs=0"}).epochs == 0);
  for (const char* bad : {"nan", "inf", "-1", "0", "1e300", "abc"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(pretrain({"--finetune-lr", bad}), doctest::Contains("--finetune-lr: expected a number"), ConfigError);
    CHECK_THROWS_WITH_AS(pretrain({"--blr", bad}), doctest::Contains("--blr: expected a number"), ConfigError);
  }
  CHECK(pretrain({"--blr", "2e-4"}).blr == 2e-4);
  // Seeds are exact integers up to 2^63 - 1 (what a checkpoint's JSON recipe holds exactly).
  CHECK(pretrain({"--seed", "9007199254740993"}).seed == 9007199254740993);  // 2^53 + 1 stays itself
  CHECK(pretrain({"--seed", "9223372036854775807"}).seed == 9223372036854775807);
  for (const char* bad : {"9223372036854775808", "18446744073709551615", "1e30", "-1"})
    CHECK_THROWS_WITH_AS(pretrain({"--seed", bad}), doctest::Contains("--seed: expected an integer"), ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--threads", "100000"}), doctest::Contains("--threads: expected an integer in [1, "),
                       ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--checkpoint-every-epochs", "0.5"}), doctest::Contains("--checkpoint-every-epochs"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--steps-per-epoch", "0"}), doctest::Contains("--steps-per-epoch"), ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--train-subset", "-1"}), doctest::Contains("--train-subset"), ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--semantics", "foo"}), doctest::Contains("--semantics: expected one of truncate|vitfreeze"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--non-finite", "skip:x"}), doctest::Contains("--non-finite skip:N"), ConfigError);
  CHECK(pretrain({"--non-finite", "skip:3"}).max_skipped_steps == 3);
  CHECK_THROWS_WITH_AS(pretrain({"--out", ""}), doctest::Contains("--out: expected a value"), ConfigError);
  // Unknown flags, missing values and a flag given twice are errors, not silently ignored.
  CHECK_THROWS_AS(pretrain({"--no-such-flag", "1"}), ConfigError);
  CHECK_THROWS_AS(pretrain({"--epochs"}), ConfigError);
  CHECK_THROWS_AS(pretrain({"--epochs", "3", "--epochs", "4"}), ConfigError);
}

TEST_CASE("flags: both executables take booleans the same way") {
  CHECK(pretrain({"--dont-freeze-pe"}).dont_freeze_pe);
  CHECK(schedule({"--dont-freeze-pe"}).dont_freeze_pe);
  CHECK_FALSE(pretrain({"--dont-freeze-pe=false"}).dont_freeze_pe);
  CHECK_FALSE(schedule({"--dont-freeze-pe=false"}).dont_freeze_pe);
  CHECK_THROWS_AS(pretrain({"--dont-freeze-pe", "1"}), ConfigError);  // "1" would be a stray argument
  CHECK_THROWS_AS(schedule({"--dont-freeze-pe", "1"}), ConfigError);
}

TEST_CASE("flags: each schedule gets its published t0 unless --t0 is given") {
  for (const auto& [name, t0] : std::vector<std::pair<std::string, double>>{
           {"cubic", 0.8}, {"linear", 0.5}, {"squared", 0.8}, {"vit-tailored", 0.8}}) {
    CAPTURE(name);
    CHECK(pretrain({"--schedule", name}).freeze_schedule().t0 == t0);
    CHECK(schedule({"--schedule", name}).freeze_schedule().t0 == t0);
  }
  CHECK(pretrain({"--schedule", "linear", "--t0", "0.7"}).freeze_schedule().t0 == 0.7);
  CHECK_FALSE(pretrain({"--schedule", "none"}).freeze_schedule().freezes);
  CHECK_THROWS_WITH_AS(pretrain({"--t0", "1e-300"}), doctest::Contains("--t0: expected a number in [0.01, 1]"), ConfigError);
  CHECK_THROWS_WITH_AS(schedule({"--t0", "0"}), doctest::Contains("--t0"), ConfigError);
}

TEST_CASE("flags: what depends on several flags, or on the backend, is checked at parse time") {
  CHECK_THROWS_WITH_AS(pretrain({"--epochs", "3", "--warmup", "3"}), doctest::Contains("--warmup 3 must be below --epochs 3"),
                       ConfigError);
  CHECK(pretrain({"--epochs", "0", "--warmup", "3"}).epochs == 0);  // no pretraining: warmup unused
  CHECK_THROWS_WITH_AS(pretrain({"--accumulation", "2", "--checkpoint-every-steps", "3"}),
                       doctest::Contains("multiple of --accumulation 2"), ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--accumulation", "4", "--steps-per-epoch", "3"}), doctest::Contains("no whole window"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--finetune-epochs", "1", "--finetune-subset", "1"}), doctest::Contains("holds no batch"),
                       ConfigError);
  CHECK(pretrain({"--finetune-epochs", "1", "--finetune-subset", "0"}).finetune_subset == 0);  // 0: all
  CHECK_THROWS_WITH_AS(pretrain({"--objective", "mae-lite", "--model", "mini"}), doctest::Contains("ViT-Tiny recipe"),
                       ConfigError);
  // The GPU has --device and --precision and refuses what it cannot do; the CPU has neither flag.
  CHECK(pretrain({"--device", "1", "--precision", "fp16"}, Backend::gpu).device == 1);
  CHECK_THROWS_AS(pretrain({"--device", "1"}), ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--non-finite", "skip"}, Backend::gpu), doctest::Contains("not available on the GPU"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(pretrain({"--dump-step", "x"}, Backend::gpu), doctest::Contains("not available on the GPU"),
                       ConfigError);
  // vitfreeze_schedule: geometry bounded so that every count fits in 64 bits.
  CHECK_THROWS_WITH_AS(schedule({"--image", "224", "--patch", "15"}), doctest::Contains("must divide --image"), ConfigError);
  CHECK_THROWS_WITH_AS(schedule({"--image", "4096", "--patch", "1"}), doctest::Contains("tokens, above"), ConfigError);
  CHECK_THROWS_WITH_AS(schedule({"--epochs", "10", "--warmup", "10"}), doctest::Contains("below --epochs"), ConfigError);
}

TEST_CASE("flags: --help returns the text instead of flags") {
  const Argv a({"--help"});
  std::string help;
  CHECK_FALSE(parse_pretrain_flags(a.argc(), a.argv(), Backend::gpu, "the description", &help));
  for (const char* flag : {"the description", "--epochs", "--checkpoint-every-steps", "--device", "--export-encoder"})
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  CHECK_FALSE(parse_schedule_flags(a.argc(), a.argv(), &help));
  CHECK(help.find("--iters-per-epoch") != std::string::npos);
}

TEST_CASE("flags of issue 15: LoMaR's windows, geometries, the teacher, fine-tuning recipe parts, and what the GPU refuses") {
  const PretrainFlags lomar = pretrain({"--objective", "lomar", "--patch", "2"});
  CHECK(lomar.resolved_mask_ratio() == 0.8);
  CHECK(lomar.window == 7);
  CHECK(lomar.window_pairing == "distinct");
  // 4 windows of 7 need 10 patches a side: the 7x7 grid of patch 4 refuses, naming what fits.
  CHECK_THROWS_WITH_AS(pretrain({"--objective", "lomar"}), doctest::Contains("try --patch 2, or --window 4"), ConfigError);
  CHECK(pretrain({"--objective", "lomar", "--window", "4"}).window == 4);
  CHECK(pretrain({"--objective", "lomar", "--patch", "2", "--window-pairing", "lomar-code"}).window_pairing == "lomar-code");
  CHECK_THROWS_AS(pretrain({"--objective", "lomar", "--patch", "3"}), ConfigError);
  CHECK_THROWS_AS(pretrain({"--objective", "micl", "--image", "56"}), ConfigError);  // MAE and LoMaR only
  CHECK(pretrain({"--objective", "mae", "--image", "56", "--patch", "2"}).other_geometry());
  CHECK_THROWS_AS(pretrain({"--objective", "mae", "--image", "40"}), ConfigError);
  // --finetune-image: only a relative encoder moves to another size as it is.
  CHECK(pretrain({"--objective", "lomar", "--patch", "2", "--finetune-image", "56"}).resolved_finetune_image() == 56);
  CHECK_THROWS_WITH_AS(pretrain({"--objective", "mae", "--finetune-image", "56"}), doctest::Contains("LoMaR"), ConfigError);
  // The teacher distils into MAE-lite; ViT-S is built for MAE (the teacher's pretraining).
  CHECK(*pretrain({"--objective", "mae-lite", "--teacher", "t.safetensors"}).teacher == "t.safetensors");
  CHECK_THROWS_AS(pretrain({"--objective", "mae", "--teacher", "t.safetensors"}), ConfigError);
  CHECK_THROWS_AS(pretrain({"--objective", "localmim", "--model", "small"}), ConfigError);
  // Fine-tuning parts and the probe.
  const PretrainFlags ft = pretrain({"--drop-path", "0.1", "--mixup", "0.8", "--cutmix", "1.0", "--rand-augment",
                                     "rand-m9-mstd0.5-inc1", "--reprob", "0.25", "--probe", "mae", "--probe-pool", "cls"});
  CHECK(ft.drop_path == 0.1);
  CHECK(*ft.mixup == 0.8);
  CHECK(ft.cutmix == 1.0);
  CHECK(ft.probe == "mae");
  CHECK_THROWS_AS(pretrain({"--drop-path", "1"}), ConfigError);
  CHECK_THROWS_AS(pretrain({"--probe", "svm"}), ConfigError);
  // What the GPU build has not run.
  for (auto args : {std::initializer_list<std::string>{"--objective", "lomar", "--patch", "2"},
                    std::initializer_list<std::string>{"--objective", "mae-lite", "--teacher", "t"},
                    std::initializer_list<std::string>{"--objective", "mae", "--image", "56"}}) {
    const Argv a(args);
    CHECK_THROWS_WITH_AS(parse_pretrain_flags(a.argc(), a.argv(), Backend::gpu, "test"), doctest::Contains("not available on the GPU"),
                         ConfigError);
  }
}
