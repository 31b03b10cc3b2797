// Finite-difference gradient checks (double) for every differentiable op of the CPU backend.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/autograd/ops/contrastive.hpp"
#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/autograd/ops/gelu.hpp"
#include "vitfreeze/autograd/ops/layernorm.hpp"
#include "vitfreeze/autograd/ops/linear.hpp"
#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/autograd/ops/tokens.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

using namespace vitfreeze;
using testing::random_tensor;
using D = double;

namespace {
constexpr double kBound = 1e-6;  // relative error bound for central differences with h = 1e-6 in double

// A scalar probe of an op's output: sum(out * w) with fixed random w, so every output entry matters.
Var<D> probe(Tape<D>& t, Var<D> out, std::uint64_t seed = 99) {
  return ops::weighted_sum(t, out, random_tensor<D>(t.value(out).shape(), seed));
}

void require_close(const GradCheckReport& r) {
  INFO(r.worst);
  CHECK(r.entries > 0);
  CHECK(r.max_error < kBound);
}

Tensor<std::int32_t> ids_tensor(std::vector<std::int32_t> v, std::int64_t rows) {
  Tensor<std::int32_t> t(Shape{rows, std::int64_t(v.size()) / rows});
  std::copy(v.begin(), v.end(), t.data());
  return t;
}
}  // namespace

TEST_CASE("gradcheck: linear (input, weight, bias)") {
  auto x = random_tensor<D>({2, 3, 5}, 1), w = random_tensor<D>({4, 5}, 2), b = random_tensor<D>({4}, 3);
  Var<D> vx, vw, vb;
  auto loss = [&](Tape<D>& t) {
    vx = t.leaf(x), vw = t.leaf(w), vb = t.leaf(b);
    return probe(t, ops::linear(t, vx, vw, vb));
  };
  require_close(check_gradients(loss, {grad_input("x", x, vx), grad_input("w", w, vw), grad_input("b", b, vb)}));
}

TEST_CASE("gradcheck: layernorm") {
  auto x = random_tensor<D>({3, 4, 8}, 4), g = random_tensor<D>({8}, 5, 0.5, 1.5), b = random_tensor<D>({8}, 6);
  Var<D> vx, vg, vb;
  auto loss = [&](Tape<D>& t) {
    vx = t.leaf(x), vg = t.leaf(g), vb = t.leaf(b);
    return probe(t, ops::layernorm(t, vx, vg, vb, 1e-6));
  };
  require_close(check_gradients(loss, {grad_input("x", x, vx), grad_input("gamma", g, vg), grad_input("beta", b, vb)}));
}

TEST_CASE("gradcheck: gelu") {
  auto x = random_tensor<D>({40}, 7, -3, 3);
  Var<D> vx;
  auto loss = [&](Tape<D>& t) { return probe(t, ops::gelu(t, vx = t.leaf(x))); };
  require_close(check_gradients(loss, {grad_input("x", x, vx)}));
}

TEST_CASE("gradcheck: attention (qkv of 2 samples, 5 tokens, 3 heads of 2)") {
  auto qkv = random_tensor<D>({2, 5, 18}, 8, -2, 2);
  Var<D> v;
  auto loss = [&](Tape<D>& t) { return probe(t, ops::attention(t, v = t.leaf(qkv), 3)); };
  require_close(check_gradients(loss, {grad_input("qkv", qkv, v)}, {.max_entries_per_input = 180}));
}

TEST_CASE("gradcheck: add, add_fixed, reshape") {
  auto a = random_tensor<D>({2, 3, 4}, 9), b = random_tensor<D>({2, 3, 4}, 10);
  auto table = random_tensor<D>({3, 4}, 11);
  Var<D> va, vb;
  auto loss = [&](Tape<D>& t) {
    va = t.leaf(a), vb = t.leaf(b);
    auto y = ops::add_fixed(t, ops::add(t, va, vb), table);
    return probe(t, ops::reshape(t, y, Shape{6, 4}));
  };
  require_close(check_gradients(loss, {grad_input("a", a, va), grad_input("b", b, vb)}));
}

TEST_CASE("gradcheck: token ops (gather, prepend, unshuffle, slice, mean)") {
  auto x = random_tensor<D>({2, 6, 4}, 12), cls = random_tensor<D>({4}, 13), mtok = random_tensor<D>({4}, 14);
  // per-sample shuffles of 6 patches; keep 2
  std::vector<std::int32_t> shuffle = {3, 0, 5, 1, 2, 4, 1, 4, 0, 2, 3, 5};
  std::vector<std::int32_t> restore(12), keep;
  for (int b = 0; b < 2; ++b)
    for (int k = 0; k < 6; ++k) restore[b * 6 + shuffle[b * 6 + k]] = k;
  for (int b = 0; b < 2; ++b) keep.insert(keep.end(), shuffle.begin() + b * 6, shuffle.begin() + b * 6 + 2);
  auto ids_keep = ids_tensor(keep, 2), ids_restore = ids_tensor(restore, 2);
  Var<D> vx, vc, vm;
  auto loss = [&](Tape<D>& t) {
    vx = t.leaf(x), vc = t.leaf(cls), vm = t.leaf(mtok);
    auto vis = ops::prepend_token(t, vc, ops::gather_tokens(t, vx, ids_keep));     // [2, 3, 4]
    auto full = ops::unshuffle_with_mask_token(t, vis, vm, ids_restore);          // [2, 7, 4]
    auto patches = ops::slice_tokens(t, full, 1, 7);                              // [2, 6, 4]
    auto pooled = ops::mean_tokens(t, full, 1);                                   // [2, 4]
    return ops::add(t, probe(t, patches, 1), probe(t, pooled, 2));
  };
  require_close(check_gradients(loss, {grad_input("x", x, vx), grad_input("cls", cls, vc), grad_input("mask_token", mtok, vm)}));
}

TEST_CASE("unshuffle puts visible tokens back at their patch and mask tokens elsewhere") {
  Tape<D> t;
  Tensor<D> vis(Shape{1, 3, 1});  // cls=100, visible patches 2 then 0 (shuffled order)
  vis[0] = 100, vis[1] = 2, vis[2] = 0;
  Tensor<D> mt = Tensor<D>::full({1}, -1);
  auto restore = ids_tensor({1, 2, 0, 3}, 1);  // shuffle was [2, 0, 1, 3]: patch 0 at position 1, ...
  auto y = t.value(ops::unshuffle_with_mask_token(t, t.constant(vis), t.constant(mt), restore));
  CHECK(y[0] == 100);
  CHECK(y[1] == 0);
  CHECK(y[2] == -1);
  CHECK(y[3] == 2);
  CHECK(y[4] == -1);
}

TEST_CASE("gradcheck: masked MSE and cross-entropy with label smoothing") {
  auto pred = random_tensor<D>({2, 3, 4}, 15), target = random_tensor<D>({2, 3, 4}, 16);
  Tensor<D> mask(Shape{2, 3});
  mask[0] = 1, mask[2] = 1, mask[4] = 0.5;
  auto logits = random_tensor<D>({4, 5}, 17, -3, 3);
  std::vector<std::int32_t> labels = {0, 4, 2, 2};
  Var<D> vp, vl;
  auto loss = [&](Tape<D>& t) {
    vp = t.leaf(pred), vl = t.leaf(logits);
    return ops::add(t, ops::masked_mse(t, vp, target, mask), ops::cross_entropy(t, vl, labels, 0.1));
  };
  require_close(check_gradients(loss, {grad_input("pred", pred, vp), grad_input("logits", logits, vl)}));
}

TEST_CASE("gradcheck: t-vMF InfoNCE between paired views (MiCL), two kernel settings") {
  auto z = random_tensor<D>({8, 5}, 18, -1, 1);  // 4 images x 2 views
  for (auto [kappa, tau] : {std::pair{1.0 / 64, 0.07}, std::pair{0.5, 0.3}}) {
    CAPTURE(kappa);
    Var<D> vz;
    auto loss = [&](Tape<D>& t) {
      vz = t.leaf(z);
      return ops::tvmf_info_nce(t, vz, kappa, tau);
    };
    require_close(check_gradients(loss, {grad_input("z", z, vz)}));
  }
}

TEST_CASE("masked MSE of an all-zero mask is a NumericError, not a NaN") {
  Tape<D> t;
  auto p = t.leaf(random_tensor<D>({1, 2, 3}, 1));
  CHECK_THROWS_AS(ops::masked_mse(t, p, random_tensor<D>({1, 2, 3}, 2), Tensor<D>(Shape{2})), NumericError);
}

TEST_CASE("shape mismatches are ShapeErrors naming both shapes") {
  Tape<D> t;
  auto x = t.leaf(random_tensor<D>({2, 5}, 1));
  auto w = t.leaf(random_tensor<D>({3, 4}, 2));
  try {
    ops::linear(t, x, w);
    FAIL("no error");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("[2, 5]") != std::string::npos);
    CHECK(std::string(e.what()).find("[3, 4]") != std::string::npos);
  }
}

TEST_CASE("no-grad scope and non-trainable inputs record no nodes") {
  Tape<D> t;
  Parameter<D> w("w", Shape{3, 4}, true);
  auto x = t.constant(random_tensor<D>({2, 4}, 1));
  w.freeze();
  ops::linear(t, x, t.parameter(w));
  CHECK(t.node_count() == 0);
  w.unfreeze();
  {
    NoGrad<D> guard(t);
    ops::linear(t, x, t.parameter(w));
  }
  CHECK(t.node_count() == 0);
  auto y = ops::linear(t, x, t.parameter(w));
  CHECK(t.node_count() == 1);
  t.backward(ops::weighted_sum(t, y, random_tensor<D>({2, 3}, 2)));
  CHECK_FALSE(w.grad.empty());
}

TEST_CASE("gradcheck: scale") {
  auto x = random_tensor<D>({3, 4}, 21);
  Var<D> vx;
  auto loss = [&](Tape<D>& t) { return probe(t, ops::scale(t, vx = t.leaf(x), -0.7)); };
  require_close(check_gradients(loss, {grad_input("x", x, vx)}));
}

TEST_CASE("the gradient checker flags a wrong backward") {
  // An op whose recorded backward is deliberately off by 1 %: the checker must report it.
  auto x = random_tensor<D>({5}, 22);
  Var<D> vx;
  auto wrong = [&](Tape<D>& t) {
    vx = t.leaf(x);
    Tensor<D> y = t.alloc(Shape{5});
    for (int i = 0; i < 5; ++i) y[i] = 2 * t.value(vx)[i];
    Var<D> vy = t.result(y, true);
    t.record([vx, vy](Tape<D>& tt) {
      for (int i = 0; i < 5; ++i) tt.grad(vx)[i] += 2.02 * tt.grad(vy)[i];
    });
    return probe(t, vy);
  };
  CHECK(check_gradients(wrong, {grad_input("x", x, vx)}).max_error > 1e-3);
}

TEST_CASE("cpu::gemm in float: strided and transposed operands match a naive loop, an empty product scales C") {
  // The float GEMM is oneDNN's in the default build, Eigen's in the sanitizer build: both are checked
  // against the definition C = alpha op(A) op(B) + beta C on strided sub-matrices.
  const std::int64_t M = 5, N = 4, K = 3, ld = 7;
  const auto a = random_tensor<float>(Shape{ld * ld}, 1), b = random_tensor<float>(Shape{ld * ld}, 2);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      auto c = random_tensor<float>(Shape{M * ld}, 3);
      const auto c0 = c.clone();
      cpu::gemm(ta, tb, M, N, K, 0.5f, a.data(), ld, b.data(), ld, 2.0f, c.data(), ld);
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < ld; ++j) {
          double want = c0[i * ld + j];
          if (j < N) {
            double sum = 0;
            for (std::int64_t k = 0; k < K; ++k)
              sum += double(a[ta ? k * ld + i : i * ld + k]) * double(b[tb ? j * ld + k : k * ld + j]);
            want = 0.5 * sum + 2.0 * want;
          }
          CHECK(c[i * ld + j] == doctest::Approx(want).epsilon(1e-5));  // columns past N untouched
        }
    }
  // K == 0: nothing to add; beta scales C, and beta == 0 writes zeros even over NaN.
  auto c = Tensor<float>::full(Shape{M * ld}, 3.0f);
  cpu::gemm(false, false, M, N, 0, 1.0f, a.data(), ld, b.data(), ld, 0.5f, c.data(), ld);
  CHECK(c[0] == 1.5f);
  CHECK(c[N] == 3.0f);
  c = Tensor<float>::full(Shape{M * ld}, std::numeric_limits<float>::quiet_NaN());
  cpu::gemm(false, false, M, N, 0, 1.0f, a.data(), ld, b.data(), ld, 0.0f, c.data(), ld);
  CHECK(c[(M - 1) * ld + N - 1] == 0.0f);
  CHECK(std::isnan(c[N]));
}
