// LoMaR's image relative position encoding (iRPE, spec mae-lomar-maelite-micl.md §2.5): the bucket
// function against the spec's table, the bucket layout with a cls token, the attention with a
// relative key bias against a naive loop written here, and its gradients (inputs and table) against
// finite differences in double.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/backend/relative_position.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

using namespace vitfreeze;
using testing::random_tensor;

TEST_CASE("iRPE axis buckets: |d| = 0, 1, 2, 3, >= 4 -> 0, 1, 2, 2, 3, with the sign of d") {
  const int want[] = {0, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
  for (int d = 0; d <= 13; ++d) {
    CHECK(relative_position_axis_bucket(d) == want[d]);
    CHECK(relative_position_axis_bucket(-d) == -want[d]);
  }
  CHECK(relative_position_axis_bucket(1000) == 3);
}

TEST_CASE("iRPE bucket table: 7x7 cells + cls, 50 buckets whatever the grid") {
  const auto b = relative_position_buckets(7, 1);
  REQUIRE(b.size() == 50u * 50u);
  for (int j = 0; j < 50; ++j) CHECK(b[std::size_t(j)] == kRelativePositionClsBucket);  // cls as query
  for (int i = 0; i < 50; ++i) CHECK(b[std::size_t(i) * 50] == kRelativePositionClsBucket);  // cls as key
  CHECK(b[1 * 50 + 1] == 3 * 7 + 3);          // same cell: offset (0, 0)
  CHECK(b[1 * 50 + 2] == 3 * 7 + (-1 + 3));    // key one column right: dc = -1
  CHECK(b[(1 + 48) * 50 + 1] == (3 + 3) * 7 + (3 + 3));  // query (6, 6), key (0, 0): (+6, +6) -> (3, 3)
  const auto big = relative_position_buckets(14, 1);  // fine-tuning grid: same 50 buckets
  int most = 0;
  for (auto x : big) most = std::max<int>(most, x);
  CHECK(most == kRelativePositionClsBucket);
  const auto no_cls = relative_position_buckets(3, 0);
  CHECK(no_cls.size() == 81u);
  CHECK(no_cls[0] == 24);  // (0, 0) offset
}

namespace {
// softmax_j(q_i.k_j / sqrt(hd) + q_i . W[:, bucket_ij]) v_j, per (sample, head), in plain loops.
std::vector<double> naive_attention(const Tensor<double>& qkv, const Tensor<double>& table, const std::vector<std::int32_t>& bucket,
                                    std::int64_t heads) {
  const std::int64_t B = qkv.dim(0), T = qkv.dim(1), D = qkv.dim(2) / 3, hd = D / heads, nb = table.dim(1);
  std::vector<double> out(std::size_t(B * T * D), 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < T; ++i) {
        auto q = [&](std::int64_t d) { return qkv[(b * T + i) * 3 * D + h * hd + d]; };
        std::vector<double> logit(static_cast<std::size_t>(T));
        double top = -1e300;
        for (std::int64_t j = 0; j < T; ++j) {
          double dot = 0, rel = 0;
          for (std::int64_t d = 0; d < hd; ++d) {
            dot += q(d) * qkv[(b * T + j) * 3 * D + D + h * hd + d];
            rel += q(d) * table[d * nb + bucket[std::size_t(i * T + j)]];
          }
          logit[std::size_t(j)] = dot / std::sqrt(double(hd)) + rel;
          top = std::max(top, logit[std::size_t(j)]);
        }
        double z = 0;
        for (auto& l : logit) z += (l = std::exp(l - top));
        for (std::int64_t j = 0; j < T; ++j)
          for (std::int64_t d = 0; d < hd; ++d)
            out[std::size_t((b * T + i) * D + h * hd + d)] += logit[std::size_t(j)] / z * qkv[(b * T + j) * 3 * D + 2 * D + h * hd + d];
      }
  return out;
}
}  // namespace

TEST_CASE("attention with a relative key bias equals a naive loop (2 samples, 3x3 grid + cls, 2 heads)") {
  const auto qkv = random_tensor<double>({2, 10, 3 * 8}, 3);
  const auto table = random_tensor<double>({4, kRelativePositionBuckets}, 4);
  const auto bucket = relative_position_buckets(3, 1);
  Tensor<std::int32_t> buckets(Shape{10, 10});
  std::copy(bucket.begin(), bucket.end(), buckets.data());
  Tape<double> tape;
  const Tensor<double> got = tape.value(ops::attention(tape, tape.constant(qkv), 2, tape.constant(table), &buckets));
  const auto want = naive_attention(qkv, table, bucket, 2);
  double worst = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) worst = std::max(worst, std::abs(got[i] - want[std::size_t(i)]));
  CHECK(worst < 1e-12);
}

TEST_CASE("gradcheck: attention with a relative key bias (qkv and the shared table)") {
  const auto qkv = random_tensor<double>({2, 10, 3 * 8}, 5);
  const auto table = random_tensor<double>({4, kRelativePositionBuckets}, 6);
  const auto bucket = relative_position_buckets(3, 1);
  Tensor<std::int32_t> buckets(Shape{10, 10});
  std::copy(bucket.begin(), bucket.end(), buckets.data());
  Var<double> vq, vt;
  auto loss = [&](Tape<double>& t) {
    vq = t.leaf(qkv), vt = t.leaf(table);
    Var<double> y = ops::attention(t, vq, 2, vt, &buckets);
    return ops::weighted_sum(t, y, random_tensor<double>(t.value(y).shape(), 99));
  };
  const auto r = check_gradients(loss, {grad_input("qkv", qkv, vq), grad_input("table", table, vt)});
  INFO(r.worst);
  CHECK(r.entries > 0);
  CHECK(r.max_error < 1e-6);
}
