// MAE-lite's attention distillation (spec mae-lomar-maelite-micl.md §3.5): the two new ops (attention
// logits, the 1x1 map over heads) against loops written here and finite differences; the term is
// zero when the student is the teacher and the adapter the identity; the whole objective's
// gradients against finite differences; the explicit model against the tape (1e-10, with a frozen
// prefix); the teacher loads from a weight file and gets no gradient and no optimiser state.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "explicit_check.hpp"
#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/autograd/ops/linear.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/mim/mae_distill.hpp"
#include "vitfreeze/model/mae_distill.hpp"
#include "vitfreeze/testing/random_tensor.hpp"
#include "vitfreeze/testing/temp_dir.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;
using testing::random_tensor;

namespace {
constexpr ViTSpec kStudent{.image = 8, .channels = 1, .patch = 2, .dim = 16, .depth = 2, .heads = 4, .mlp_ratio = 2};
constexpr ViTSpec kTeacher{.image = 8, .channels = 1, .patch = 2, .dim = 24, .depth = 3, .heads = 3, .mlp_ratio = 2};
template <class T, ViTSpec Teacher = kTeacher>
using Distill = mim::MaeLiteDistill<kStudent, Teacher, T>;

}  // namespace

TEST_CASE("attention logits and the 1x1 map over heads: values from loops written here, gradients by finite differences") {
  constexpr std::int64_t B = 2, T = 5, H = 3, hd = 2, D = H * hd;
  Tensor<double> qkv = random_tensor<double>({B, T, 3 * D}, 1);
  Tensor<double> w = random_tensor<double>({2, H}, 2);
  Tape<double> tape;
  const Tensor<double> logits = tape.value(ops::attention_logits(tape, tape.constant(qkv), H));
  const Tensor<double> mixed = tape.value(ops::channel_mix(tape, tape.constant(logits), tape.constant(w)));
  REQUIRE(mixed.shape() == Shape{B, 2, T, T});
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < T; ++i)
        for (std::int64_t j = 0; j < T; ++j) {
          double dot = 0;
          for (std::int64_t d = 0; d < hd; ++d) dot += qkv.at(b, i, h * hd + d) * qkv.at(b, j, D + h * hd + d);
          CHECK(logits.at(b, h, i, j) == doctest::Approx(dot / std::sqrt(double(hd))).epsilon(1e-13));
        }
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t o = 0; o < 2; ++o)
      for (std::int64_t k = 0; k < T * T; ++k) {
        double y = 0;
        for (std::int64_t h = 0; h < H; ++h) y += w[o * H + h] * logits[(b * H + h) * T * T + k];
        CHECK(mixed[(b * 2 + o) * T * T + k] == doctest::Approx(y).epsilon(1e-13));
      }

  Var<double> vqkv, vw;
  const Tensor<double> probe = random_tensor<double>({B, 2, T, T}, 3);
  auto loss = [&](Tape<double>& t) {
    vqkv = t.leaf(qkv), vw = t.leaf(w);
    return ops::weighted_sum(t, ops::channel_mix(t, ops::attention_logits(t, vqkv, H), vw), probe);
  };
  const auto r = check_gradients(loss, {grad_input("qkv", qkv, vqkv), grad_input("w", w, vw)});
  INFO(r.worst);
  CHECK(r.max_error < 1e-7);
}

TEST_CASE("the distillation term is zero when the student is the teacher and the adapter the identity") {
  Distill<double, kStudent> objective(1);
  nn::ViT<kStudent, double> student(2);
  const auto from = student.parameters(), to = objective.teacher.parameters();
  for (std::size_t i = 0; i < from.size(); ++i) to[i]->value.copy_from(from[i]->value);
  auto& a = objective.adapter.value;
  a.zero();
  for (std::int64_t h = 0; h < kStudent.heads; ++h) a.at(h, h) = 1.0;
  const auto images = random_tensor<double>({3, 1, 8, 8}, 3);
  const auto masks = mim::Random<750>::make(3, 4, 4, 4, 0);

  Tape<double> tape;
  const auto out = objective.forward(tape, student, images, masks);
  const Tensor<double> mae_only = tape.value(mim::MaeLite<kStudent, double>(1).forward(tape, student, images, masks).loss);
  CHECK(tape.value(out.loss)[0] == mae_only[0]);  // the same decoder weights (seed 1): MAE's loss plus exactly 0
  CHECK(tape.value(objective.distillation(tape, student.blocks.back().attn.last_qkv, images, masks))[0] == 0.0);

  cpu::CpuContext ctx;
  model::MaeDistill<Cpu, Fp64> explicit_model(ctx, student, objective);
  double loss[2] = {0, 0};
  explicit_model.forward_backward(ctx, images, explicit_model.upload_masks(ctx, masks), loss);
  CHECK(loss[0] == doctest::Approx(mae_only[0]).epsilon(1e-12));
  // A teacher that differs gives a positive term.
  objective.teacher.blocks.back().attn.qkv.weight.value[0] += 0.5;
  CHECK(tape.value(objective.distillation(tape, student.blocks.back().attn.last_qkv, images, masks))[0] > 0.0);
}

TEST_CASE("gradcheck: MAE-lite with the distillation term, double (student, decoder and adapter, never the teacher)") {
  Distill<double> objective(4);
  nn::ViT<kStudent, double> student(5);
  const auto images = random_tensor<double>({2, 1, 8, 8}, 6);
  const auto masks = mim::Random<500>::make(2, 4, 4, 7, 0);
  std::vector<GradCheckInput> inputs;
  auto params = student.parameters();
  objective.collect_parameters(params);
  for (auto* p : params) inputs.push_back(grad_input(*p));
  const auto r = check_gradients([&](Tape<double>& t) { return objective.forward(t, student, images, masks).loss; },
                                 inputs, {.max_entries_per_input = 10});
  INFO(r.worst);
  // Entries near 1e-3 of a tensor's largest gradient carry ~1e-6 relative noise in central
  // differences through a whole encoder and decoder: bound 1e-5 (the term alone is checked tighter).
  CHECK(r.max_error < 1e-5);
  // The term alone, through the adapter and the student's last block.
  const auto term = check_gradients(
      [&](Tape<double>& t) {
        student.forward(t, images, &masks.ids_keep);
        return objective.distillation(t, student.blocks.back().attn.last_qkv, images, masks);
      },
      {grad_input(objective.adapter), grad_input(student.blocks.back().attn.qkv.weight)});
  INFO(term.worst);
  CHECK(term.max_error < 1e-7);
  for (auto* p : objective.teacher.parameters()) CHECK(p->grad.empty());
}

TEST_CASE("model::MaeDistill on the CPU equals the tape: loss and every gradient, double, with and without a frozen prefix") {
  for (const bool frozen : {false, true}) {
    INFO("frozen prefix: " << frozen);
    Distill<double> objective(8);
    nn::ViT<kStudent, double> student(9);
    if (frozen) {
      for (auto* p : parameters_of<double>(student.patch_embed)) p->freeze();
      student.cls_token.freeze();
      for (auto* p : parameters_of<double>(student.blocks[0])) p->freeze();
    }
    const auto images = random_tensor<double>({3, 1, 8, 8}, 10);
    const auto masks = mim::Random<750>::make(3, 4, 4, 11, 0);
    testing::check_against_tape<model::MaeDistill<Cpu, Fp64>>(student, objective, images, masks, 1e-10);
    CHECK_FALSE(objective.adapter.grad.empty());  // the term reached the adapter (buffer zeroed, kept)
    for (auto* p : objective.teacher.parameters()) CHECK(p->grad.empty());
  }
}

TEST_CASE("the teacher loads from a weight file, gets no gradient and no optimiser state, and is not trained") {
  testing::TempDir dir("distill");
  nn::ViT<kTeacher, float> pretrained(12);
  io::export_encoder(pretrained, dir.path() / "teacher.safetensors");

  using Objective = Distill<float>;
  nn::ViT<kStudent, float> student(13);
  Objective objective(14);
  io::import_encoder(objective.teacher, dir.path() / "teacher.safetensors");
  const auto teacher = objective.teacher.parameters();
  const auto original = pretrained.parameters();
  for (std::size_t i = 0; i < teacher.size(); ++i) {
    CHECK_FALSE(teacher[i]->trainable);
    for (std::int64_t k = 0; k < teacher[i]->value.numel(); ++k) REQUIRE(teacher[i]->value[k] == original[i]->value[k]);
  }

  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, false}.fractions(3), {2, 0, 3},
                                      {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 1e-3, .min_lr = 1e-5});
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = 2;
  opt.progress = false;
  train::Pretrainer trainer(student, objective, mim::Random<750>{}, controller, adam, opt);
  for (auto* p : trainer.all_parameters())
    for (auto* t : teacher) REQUIRE(p != t);
  for (std::int64_t g = 0; g < 6; ++g) CHECK(std::isfinite(trainer.step(random_tensor<float>({4, 1, 8, 8}, 20 + g), g)));
  for (std::size_t i = 0; i < teacher.size(); ++i) {
    CHECK(teacher[i]->grad.empty());
    CHECK_FALSE(adam.has_state(*teacher[i]));
    for (std::int64_t k = 0; k < teacher[i]->value.numel(); ++k) REQUIRE(teacher[i]->value[k] == original[i]->value[k]);
  }
  CHECK(adam.has_state(objective.adapter));  // the adapter trains to the end, with the decoder
  CHECK(std::find(trainer.units().back().begin(), trainer.units().back().end(), &objective.adapter) !=
        trainer.units().back().end());
}
