// Masking policies, patchify, normalised-pixel and HOG targets, mask re-scaling (vitfreeze::mim).
// Expected values come from the specs' test vectors (mae-lomar-maelite-micl.md §6,
// vitfreeze-localmim-freezeout.md §2.4-2.5) or are worked out by hand in the comments.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <numbers>
#include <numeric>
#include <set>
#include <vector>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/mim/hog.hpp"
#include "vitfreeze/mim/mask_rescale.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/norm_pix.hpp"
#include "vitfreeze/mim/patchify.hpp"

using namespace vitfreeze;
using namespace vitfreeze::mim;

namespace {

template <class T>
Tensor<T> random_tensor(const Shape& shape, std::uint32_t tag, double lo = -1, double hi = 1) {
  Tensor<T> t(shape);
  RandomStream rng(7, RngPurpose::test, tag);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(lo + (hi - lo) * rng.uniform());
  return t;
}

bool same_ints(const Tensor<std::int32_t>& a, const Tensor<std::int32_t>& b) {
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.numel(), b.data());
}

// The invariants every MaskSet must satisfy (MaskingPolicy contract).
void check_mask_set(const MaskSet& m) {
  const int L = m.patches, K = m.keep;
  REQUIRE(m.ids_shuffle.shape() == Shape{m.batch, L});
  REQUIRE(m.ids_keep.shape() == Shape{m.batch, K});
  REQUIRE(m.ids_restore.shape() == Shape{m.batch, L});
  REQUIRE(m.mask.shape() == Shape{m.batch, L});
  for (int b = 0; b < m.batch; ++b) {
    std::vector<int> seen(L, 0);
    int ones = 0;
    for (int r = 0; r < L; ++r) {
      const int l = m.ids_shuffle.at(b, r);
      REQUIRE(l >= 0);
      REQUIRE(l < L);
      ++seen[l];
      CHECK(m.ids_restore.at(b, l) == r);          // inverse permutation
      CHECK(m.mask.at(b, l) == (r < K ? 0 : 1));   // 1 = removed
      if (r < K) CHECK(m.ids_keep.at(b, r) == l);  // ids_keep = first K, same order
      ones += m.mask.at(b, r);
    }
    CHECK(std::count(seen.begin(), seen.end(), 1) == L);  // a permutation
    CHECK(ones == L - K);
  }
}

}  // namespace

// ---- masking ----------------------------------------------------------------------------------------

TEST_CASE("kept counts follow floor(L(1-r)) in double (spec §6)") {
  CHECK(kept_count(196, 750) == 49);
  CHECK(kept_count(196, 800) == 39);
  CHECK(kept_count(196, 900) == 19);  // 196*(1-0.9) = 19.5999..., not 19.6
  CHECK(even_kept_count(196, 900) == 18);
  CHECK(even_kept_count(196, 800) == 38);
  CHECK(masked_count(49, 800) == 39);  // LoMaR: floor(49*0.8) = floor(39.2)
  static_assert(Random<750>::kept(14, 14) == 49 && Random<900>::kept(14, 14) == 19);
  static_assert(SplitView<900>::kept(14, 14) == 18 && SplitView<900>::view_size(14, 14) == 9);
  static_assert(Window<7, 4, 800>::kept(14, 14) == 10);
  static_assert(Block<750>::kept(14, 14) == 49);
}

TEST_CASE("Random masking: invariants, determinism and sample keys") {
  const MaskSet m = Random<750>::make(6, 14, 14, 42, 3);
  CHECK(m.batch == 6);
  CHECK(m.keep == 49);
  check_mask_set(m);

  const MaskSet again = Random<750>::make(6, 14, 14, 42, 3);
  CHECK(same_ints(m.ids_shuffle, again.ids_shuffle));
  const MaskSet next_step = Random<750>::make(6, 14, 14, 42, 4);
  const MaskSet other_seed = Random<750>::make(6, 14, 14, 43, 3);
  for (int b = 0; b < 6; ++b) {
    const auto row = [&](const MaskSet& s) {
      return std::vector<int>(&s.ids_keep.at(b, 0), &s.ids_keep.at(b, 0) + 49);
    };
    CHECK(row(m) != row(next_step));
    CHECK(row(m) != row(other_seed));
    if (b) CHECK(row(m) != std::vector<int>(&m.ids_keep.at(0, 0), &m.ids_keep.at(0, 0) + 49));
  }

  // A rank holding samples 2..5 of the global batch draws exactly those samples' masks.
  const MaskSet shard = Random<750>::make(4, 14, 14, 42, 3, 2);
  CHECK(std::equal(shard.ids_shuffle.data(), shard.ids_shuffle.data() + 4 * 196, m.ids_shuffle.data() + 2 * 196));

  // Each patch is removed with probability 0.75: over 6*196 draws the rate stays near it.
  const Tensor<float> mf = m.mask_as<float>();
  CHECK(std::accumulate(mf.data(), mf.data() + mf.numel(), 0.0f) == doctest::Approx(6 * 147));
  const MaskSet many = Random<750>::make(64, 14, 14, 1, 0);
  std::vector<int> removed(196, 0);
  for (int b = 0; b < 64; ++b)
    for (int l = 0; l < 196; ++l) removed[l] += many.mask.at(b, l);
  CHECK(*std::min_element(removed.begin(), removed.end()) > 30);  // E = 48, sd ~ 3.5
  CHECK(*std::max_element(removed.begin(), removed.end()) < 64);
}

namespace {
// 4-connected components of the removed patches of row b.
int removed_components(const MaskSet& m, int b, int gh, int gw) {
  std::vector<int> label(gh * gw, 0), stack;
  int components = 0;
  for (int start = 0; start < gh * gw; ++start) {
    if (!m.mask.at(b, start) || label[start]) continue;
    ++components;
    stack = {start};
    label[start] = components;
    while (!stack.empty()) {
      const int l = stack.back();
      stack.pop_back();
      const int r = l / gw, c = l % gw;
      const std::array<std::array<int, 2>, 4> nbrs{{{r - 1, c}, {r + 1, c}, {r, c - 1}, {r, c + 1}}};
      for (auto [nr, nc] : nbrs)
        if (nr >= 0 && nr < gh && nc >= 0 && nc < gw && m.mask.at(b, nr * gw + nc) && !label[nr * gw + nc]) {
          label[nr * gw + nc] = components;
          stack.push_back(nr * gw + nc);
        }
    }
  }
  return components;
}
}  // namespace

TEST_CASE("Block masking: exact count, blocks, determinism") {
  for (int step = 0; step < 20; ++step) {
    check_mask_set(Block<400>::make(4, 14, 14, 5, step));
    check_mask_set(Block<750>::make(4, 14, 14, 5, step));
    check_mask_set(Block<600>::make(4, 7, 7, 5, step));  // small grid: few 16-patch rectangles fit
    check_mask_set(Block<500>::make(2, 3, 3, 5, step));  // no 16-patch rectangle fits: single-cell fallback
  }
  const MaskSet block = Block<500>::make(32, 14, 14, 9, 0);
  const MaskSet random = Random<500>::make(32, 14, 14, 9, 0);
  CHECK(block.keep == 98);
  // 98 removed patches: block-wise they form a few rectangles; i.i.d. they scatter into dozens.
  double block_parts = 0, random_parts = 0;
  for (int b = 0; b < 32; ++b) {
    block_parts += removed_components(block, b, 14, 14) / 32.0;
    random_parts += removed_components(random, b, 14, 14) / 32.0;
  }
  MESSAGE("removed components per image: block ", block_parts, ", random ", random_parts);
  CHECK(block_parts < 4);
  CHECK(random_parts > 10);
  CHECK(same_ints(block.ids_shuffle, Block<500>::make(32, 14, 14, 9, 0).ids_shuffle));
  CHECK(!same_ints(block.ids_shuffle, Block<500>::make(32, 14, 14, 9, 1).ids_shuffle));
}

TEST_CASE("SplitView (MiCL): 18 kept as two disjoint views of 9") {
  const MaskSet m = SplitView<900>::make(5, 14, 14, 11, 2);
  check_mask_set(m);
  CHECK(m.keep == 18);
  CHECK(m.views == 2);
  CHECK(m.view_size() == 9);
  // Same noise as MAE masking: the keep list is the first 18 of Random<900>'s shuffle.
  const MaskSet mae = Random<900>::make(5, 14, 14, 11, 2);
  for (int b = 0; b < 5; ++b) {
    std::set<int> v1(&m.ids_keep.at(b, 0), &m.ids_keep.at(b, 0) + 9),
        v2(&m.ids_keep.at(b, 9), &m.ids_keep.at(b, 9) + 9);
    CHECK(v1.size() == 9);
    CHECK(v2.size() == 9);
    for (int l : v1) CHECK(v2.count(l) == 0);
    CHECK(std::equal(&m.ids_keep.at(b, 0), &m.ids_keep.at(b, 0) + 18, &mae.ids_keep.at(b, 0)));
  }
}

TEST_CASE("Window masking (LoMaR): windows, 39 of 49 masked, pairings") {
  using W = Window<7, 4, 800>;
  const int N = 8;
  const MaskSet m = W::make(N, 14, 14, 3, 17);
  check_mask_set(m);
  CHECK(m.images == N);
  CHECK(m.batch == N * 4);
  CHECK(m.patches == 49);
  CHECK(m.masked() == 39);
  std::set<int> tops, lefts;
  for (int w = 0; w < 4; ++w) {
    tops.insert(m.window_origin.at(w, 0));
    lefts.insert(m.window_origin.at(w, 1));
    CHECK(m.window_origin.at(w, 0) <= 7);  // 14 - 7: 8 positions per axis
    CHECK(m.window_origin.at(w, 1) <= 7);
  }
  CHECK(tops.size() == 4);  // drawn from permutations: pairwise distinct
  CHECK(lefts.size() == 4);
  for (int s = 0; s < m.batch; ++s) {
    CHECK(m.source_image[s] == s % N);
    // distinct pairing: sequence s shows window s / N, cells row-major inside it
    const int top = m.window_origin.at(s / N, 0), left = m.window_origin.at(s / N, 1);
    CHECK(m.source_patch.at(s, 0) == top * 14 + left);
    CHECK(m.source_patch.at(s, 8) == (top + 1) * 14 + left + 1);
    CHECK(m.source_patch.at(s, 48) == (top + 6) * 14 + left + 6);
  }
  // The released code's pairing: with N divisible by M, sequences s and s+N share image and window
  // but have different masks (spec §6 "LoMaR quirk check").
  const MaskSet q = Window<7, 4, 800, WindowPairing::lomar_code>::make(N, 14, 14, 3, 17);
  check_mask_set(q);
  for (int s = 0; s + N < q.batch; ++s) {
    CHECK(q.source_image[s] == q.source_image[s + N]);
    CHECK(std::equal(&q.source_patch.at(s, 0), &q.source_patch.at(s, 0) + 49, &q.source_patch.at(s + N, 0)));
    CHECK(!std::equal(&q.ids_keep.at(s, 0), &q.ids_keep.at(s, 0) + 10, &q.ids_keep.at(s + N, 0)));
  }
  CHECK_THROWS_AS(W::make(2, 7, 7, 0, 0), ConfigError);  // 4 windows of 7 on a 7x7 grid
}

// ---- patchify ---------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("patchify layout on a hand-made image", T, float, double) {
  // img[c][y][x] = 100c + 10y + x, C = 2, 4x6 pixels, p = 2 -> grid 2x3, P = 8.
  Tensor<T> img(Shape{1, 2, 4, 6});
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x) img.at(0, c, y, x) = T(100 * c + 10 * y + x);
  const Tensor<T> t = patchify(img, 2);
  REQUIRE(t.shape() == Shape{1, 6, 8});
  // Patch l = i*3 + j = 4 is (i = 1, j = 1): pixels y in {2, 3}, x in {2, 3}; order (u, v, c).
  const T want_pixel_major[8] = {22, 122, 23, 123, 32, 132, 33, 133};
  for (int k = 0; k < 8; ++k) CHECK(t.at(0, 4, k) == want_pixel_major[k]);
  CHECK(t.at(0, 2, (1 * 2 + 0) * 2 + 1) == T(100 + 10 * 1 + 4));  // l = 2: i = 0, j = 2; u = 1, v = 0, c = 1
  const Tensor<T> cm = patchify_channel_major(img, 2);
  const T want_channel_major[8] = {22, 23, 32, 33, 122, 123, 132, 133};  // order (c, u, v)
  for (int k = 0; k < 8; ++k) CHECK(cm.at(0, 4, k) == want_channel_major[k]);
}

TEST_CASE_TEMPLATE("unpatchify is the inverse and the adjoint of patchify", T, float, double) {
  const Tensor<T> img = random_tensor<T>(Shape{3, 3, 8, 12}, 1);
  const Tensor<T> back = unpatchify(patchify(img, 4), 4, 2, 3);
  const Tensor<T> back_cm = unpatchify_channel_major(patchify_channel_major(img, 4), 4, 2, 3);
  REQUIRE(back.shape() == img.shape());
  CHECK(std::equal(img.data(), img.data() + img.numel(), back.data()));
  CHECK(std::equal(img.data(), img.data() + img.numel(), back_cm.data()));
  const Tensor<T> square = random_tensor<T>(Shape{2, 1, 6, 6}, 2);
  const Tensor<T> sq_back = unpatchify(patchify(square, 3), 3);
  CHECK(std::equal(square.data(), square.data() + square.numel(), sq_back.data()));
  // <patchify(x), y> = <x, unpatchify(y)>: unpatchify serves as patchify's backward.
  const Tensor<T> y = random_tensor<T>(Shape{3, 6, 48}, 3);
  const Tensor<T> px = patchify(img, 4), uy = unpatchify(y, 4, 2, 3);
  double lhs = 0, rhs = 0;
  for (std::int64_t i = 0; i < y.numel(); ++i) lhs += double(px[i]) * y[i];
  for (std::int64_t i = 0; i < img.numel(); ++i) rhs += double(img[i]) * uy[i];
  CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
  CHECK_THROWS_AS(patchify(img, 5), ShapeError);
  CHECK_THROWS_AS(unpatchify(y, 4), ShapeError);  // 6 patches is not a square grid
}

// ---- normalised pixels ------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("norm-pix targets: zero mean, (P-1)/P mean square, loss of a zero prediction", T, float, double) {
  const int B = 2, L = 16, P = 768;
  const Tensor<T> raw = random_tensor<T>(Shape{B, L, P}, 4, -0.5, 2.0);
  const Tensor<T> t = normalize_patches(raw);
  for (int r = 0; r < B * L; ++r) {
    double sum = 0, sum_raw = 0, sq = 0;
    for (int k = 0; k < P; ++k) sum_raw += raw[r * P + k];
    double var = 0;
    for (int k = 0; k < P; ++k) var += (raw[r * P + k] - sum_raw / P) * (raw[r * P + k] - sum_raw / P);
    var /= P - 1;  // unbiased
    for (int k = 0; k < P; ++k) {
      sum += t[r * P + k];
      sq += double(t[r * P + k]) * t[r * P + k];
    }
    CHECK(std::abs(sum / P) < 1e-6);
    CHECK(sq / P == doctest::Approx(double(P - 1) / P * var / (var + 1e-6)).epsilon(1e-5));
  }
  // MAE loss of an all-zero prediction over the masked patches: mean_l m_l mean_k t^2 ~ (P-1)/P.
  const MaskSet m = Random<750>::make(B, 4, 4, 0, 0);
  double num = 0, den = 0;
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) {
      double e = 0;
      for (int k = 0; k < P; ++k) e += double(t.at(b, l, k)) * t.at(b, l, k) / P;
      num += m.mask.at(b, l) * e;
      den += m.mask.at(b, l);
    }
  CHECK(num / den == doctest::Approx(0.99870).epsilon(2e-5));
  CHECK_THROWS_AS(normalize_patches(Tensor<T>(Shape{2, 1})), ShapeError);
}

// ---- HOG --------------------------------------------------------------------------------------------
//
// Hand computation used below. Vertical step edge: x = 0 in columns 0..3, 1 in columns 4..7 (8x8).
// At a pixel in column 3: left neighbour 0, right neighbour 1 in every row, so each row difference
// d = x[.][c-1] - x[.][c+1] = -1 and g0 = d + 2d + d = -4; rows are equal, so g1 = 0. Column 4: left
// neighbour (column 3) is 0, right is 1: again g0 = -4, g1 = 0. Elsewhere both are 0 (border columns
// under reflect padding see x[-1] = x[1], x[8] = x[6]: d = 0). Phase atan2(-4, 0) = -pi/2;
// -pi/2 / pi * 9 = -4.5, floor -5, mod 9 = 4: bin 4. With pool 2, cell columns 1 (pixels 2,3) and
// 2 (pixels 4,5) hold 2 pixels of magnitude 4 each: average 2 in bin 4, normalised to exactly 1.
// Horizontal edge (top half 0, bottom 1): g1 = top - bottom = -4, g0 = 0, phase atan2(0, -4) = pi,
// pi/pi*9 = 9, mod 9 = 0: bin 0.

namespace {
template <class T>
Tensor<T> step_image(int channels, bool vertical_edge) {
  Tensor<T> img(Shape{1, channels, 8, 8});
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) img.at(0, c, y, x) = T((vertical_edge ? x : y) >= 4 ? 1 : 0);
  return img;
}
}  // namespace

TEST_CASE("HOG orientation bins at the bin boundaries") {
  CHECK(cpu::detail::hog_bin(-4.0f, 0.0f, 9) == 4);   // -pi/2 -> -4.5 -> -5 -> 4
  CHECK(cpu::detail::hog_bin(4.0f, 0.0f, 9) == 4);    // +pi/2 -> 4.5 -> 4: orientation modulo pi
  CHECK(cpu::detail::hog_bin(0.0f, -4.0f, 9) == 0);   // pi -> 9 -> 0
  CHECK(cpu::detail::hog_bin(-0.0f, -4.0f, 9) == 0);  // -pi -> -9 -> 0
  CHECK(cpu::detail::hog_bin(0.0, 4.0, 9) == 0);
  CHECK(cpu::detail::hog_bin(-8.0, -8.0, 9) == 2);   // -3pi/4 -> -6.75 -> -7 -> 2
  CHECK(cpu::detail::hog_bin(-8.0, 8.0, 9) == 6);    // -pi/4 -> -2.25 -> -3 -> 6
  CHECK(cpu::detail::hog_bin(-8.0, 8.0, 18) == 13);  // -pi/4 -> -4.5 -> -5 -> 13
  CHECK(cpu::detail::reflect_index(-1, 8) == 1);
  CHECK(cpu::detail::reflect_index(8, 8) == 6);
}

TEST_CASE_TEMPLATE("HOG: constant images give exactly zero cells", T, float, double) {
  const Tensor<T> img = Tensor<T>::full(Shape{2, 3, 8, 8}, T(0.7309));
  for (int pool : {1, 2, 4, 8}) {
    const Tensor<T> h = hog(img, 9, pool);
    REQUIRE(h.shape() == Shape{2, (8 / pool) * (8 / pool), 27});
    for (std::int64_t i = 0; i < h.numel(); ++i) REQUIRE(h[i] == T(0));
  }
}

TEST_CASE_TEMPLATE("HOG: step edges land in the hand-computed bin with unit norm", T, float, double) {
  for (int channels : {1, 3}) {
    for (bool vertical : {true, false}) {
      const Tensor<T> h = hog(step_image<T>(channels, vertical), 9, 2);  // 4x4 cells
      REQUIRE(h.shape() == Shape{1, 16, channels * 9});
      const int want_bin = vertical ? 4 : 0;
      for (int cy = 0; cy < 4; ++cy)
        for (int cx = 0; cx < 4; ++cx) {
          const bool on_edge = (vertical ? cx : cy) == 1 || (vertical ? cx : cy) == 2;
          for (int c = 0; c < channels; ++c)
            for (int k = 0; k < 9; ++k) CHECK(h.at(0, cy * 4 + cx, c * 9 + k) == T(on_edge && k == want_bin ? 1 : 0));
        }
    }
  }
}

TEST_CASE_TEMPLATE("HOG: reflect padding, ramps and channel concatenation", T, float, double) {
  // Ramp x = a*col + b*row on channel 1 only (channels 0 and 2 constant). Interior pixels:
  // g0 = 4 * (x[c-1] - x[c+1]) = -8a, g1 = 4 * (x[r-1] - x[r+1]) = -8b. At the border columns the
  // reflected neighbour equals the inner one, so g0 = 0 there (and g1 = 0 on border rows).
  Tensor<T> img = Tensor<T>::full(Shape{1, 3, 6, 6}, T(-0.25));
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) img.at(0, 1, y, x) = T(x - y);  // a = 1, b = -1: atan2(-8, 8) = -pi/4 -> bin 6
  const Tensor<T> h = hog(img, 9, 1);                           // one cell per pixel
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) {
      const bool row_border = y == 0 || y == 5, col_border = x == 0 || x == 5;
      // border row: g1 = 0, g0 = -8 -> bin 4; border column: g0 = 0, g1 = 8 -> atan2(0, 8) = 0 -> bin 0
      const int want = row_border && col_border ? -1 : row_border ? 4 : col_border ? 0 : 6;
      for (int k = 0; k < 27; ++k) {
        const T expected = (k / 9 == 1 && k % 9 == want) ? T(1) : T(0);
        CHECK(h.at(0, y * 6 + x, k) == expected);
      }
    }
}

TEST_CASE_TEMPLATE("HOG: multi-scale pooling equals single scales, cells are unit vectors", T, float, double) {
  const Tensor<T> img = random_tensor<T>(Shape{2, 3, 16, 16}, 5);
  const std::array<int, 3> pools{2, 4, 8};
  const std::vector<Tensor<T>> all = hog_multiscale(img, 9, std::span<const int>(pools));
  REQUIRE(all.size() == 3);
  for (int s = 0; s < 3; ++s) {
    const Tensor<T> one = hog(img, 9, pools[s]);
    REQUIRE(all[s].shape() == one.shape());
    CHECK(std::equal(one.data(), one.data() + one.numel(), all[s].data()));
    for (std::int64_t hist = 0; hist < one.numel() / 9; ++hist) {
      double sq = 0;
      for (int k = 0; k < 9; ++k) sq += double(one[hist * 9 + k]) * one[hist * 9 + k];
      CHECK(sq == doctest::Approx(1.0).epsilon(1e-5));
    }
  }
  // Pool 8 on a 16x16 image, cell 0 of channel 0 by brute force: average then normalise.
  std::array<double, 9> want{};
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) {
      const auto px = [&](int r, int c) { return double(img.at(0, 0, r < 0 ? -r : r, c < 0 ? -c : c)); };
      const double g0 =
          px(y - 1, x - 1) - px(y - 1, x + 1) + 2 * (px(y, x - 1) - px(y, x + 1)) + px(y + 1, x - 1) - px(y + 1, x + 1);
      const double g1 = px(y - 1, x - 1) + 2 * px(y - 1, x) + px(y - 1, x + 1) - px(y + 1, x - 1) - 2 * px(y + 1, x) -
                        px(y + 1, x + 1);
      int bin = int(std::floor(std::atan2(g0, g1) / std::numbers::pi * 9)) % 9;
      want[bin < 0 ? bin + 9 : bin] += std::sqrt(g0 * g0 + g1 * g1) / 64;
    }
  double norm = 0;
  for (double v : want) norm += v * v;
  for (int k = 0; k < 9; ++k)
    CHECK(double(all[2].at(0, 0, k)) == doctest::Approx(want[k] / std::sqrt(norm)).epsilon(1e-5));
  CHECK_THROWS_AS(hog(img, 9, 3), ConfigError);  // 16 is not a multiple of 3
}

// ---- mask re-scaling and scale feasibility ---------------------------------------------------------

TEST_CASE("scale feasibility and HOG pools (spec §2.4: pools 4, 8, 16, 32 at 224/16)") {
  static_assert(hog_pool_for_scale(224, 16, 4, 1) == 4);
  static_assert(hog_pool_for_scale(224, 16, 2, 1) == 8);
  static_assert(hog_pool_for_scale(224, 16, 1, 1) == 16);
  static_assert(hog_pool_for_scale(224, 16, 1, 2) == 32);
  static_assert(scale_is_feasible(28, 2, 2, 1) && hog_pool_for_scale(28, 2, 2, 1) == 1);
  static_assert(scale_is_feasible(28, 2, 1, 2) && hog_pool_for_scale(28, 2, 1, 2) == 4);  // 7x7 cells
  static_assert(!scale_is_feasible(28, 2, 4, 1));                                         // half-pixel cells
  static_assert(!scale_is_feasible(28, 4, 1, 2));  // 7x7 grid halves to 3.5 cells
  static_assert(!scale_is_feasible(30, 4, 1, 1));  // image not a multiple of the patch
  CHECK_THROWS_AS(hog_pool_for_scale(28, 2, 4, 1), ConfigError);
  CHECK(rescaled_grid(14, 1, 2) == 7);
}

TEST_CASE_TEMPLATE("mask re-scaling: nearest upsampling and 2x2 averaging", T, float, double) {
  // 2x2 mask [[1, 0], [0, 1]] at s = 2 and s = 4: each patch becomes an s x s block.
  Tensor<std::uint8_t> m2(Shape{1, 4});
  m2[0] = 1, m2[3] = 1;
  for (int s : {1, 2, 4}) {
    const Tensor<T> up = rescale_mask<T>(m2, 2, 2, s, 1);
    REQUIRE(up.shape() == Shape{1, 4 * s * s});
    for (int y = 0; y < 2 * s; ++y)
      for (int x = 0; x < 2 * s; ++x) CHECK(up.at(0, y * 2 * s + x) == T((y < s) == (x < s) ? 1 : 0));
  }
  // 4x6 mask whose 2x2 blocks hold 0, 1, 2 / 3, 4, 2 removed patches -> 0, .25, .5 / .75, 1, .5
  const int rows[4][6] = {{0, 0, 1, 0, 1, 1}, {0, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 0, 1}, {1, 0, 1, 1, 1, 0}};
  Tensor<T> m4(Shape{1, 24});
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x) m4[y * 6 + x] = T(rows[y][x]);
  const Tensor<T> half = rescale_mask<T>(m4, 4, 6, 1, 2);
  REQUIRE(half.shape() == Shape{1, 6});
  const double want[6] = {0, 0.25, 0.5, 0.75, 1, 0.5};
  for (int i = 0; i < 6; ++i) CHECK(half[i] == T(want[i]));
  // On a real mask every scale keeps the masked fraction (the loss denominators agree).
  const MaskSet ms = Random<750>::make(3, 14, 14, 8, 1);
  for (auto [num, den] : {std::array<int, 2>{4, 1}, {2, 1}, {1, 1}, {1, 2}}) {
    const Tensor<T> r = rescale_mask<T>(ms.mask, 14, 14, num, den);
    const double sum = std::accumulate(r.data(), r.data() + r.numel(), 0.0);
    CHECK(sum / double(r.numel()) == doctest::Approx(147.0 / 196.0));
  }
  CHECK_THROWS_AS(rescale_mask<T>(ms.mask, 14, 14, 1, 4), ConfigError);  // 14 / 4 is not whole
}

#include "vitfreeze/mim/reconstruction.hpp"

TEST_CASE("reconstruction panels: a perfect norm-pix prediction gives back the original image") {
  const auto norm = vitfreeze::data::Normalize::fashion_mnist();
  vitfreeze::Tensor<float> images(vitfreeze::Shape{2, 1, 8, 8});
  vitfreeze::RandomStream rng(4, vitfreeze::RngPurpose::test);
  for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = float(rng.uniform() * 2 - 0.5);
  auto masks = vitfreeze::mim::Random<750>::make(2, 4, 4, 1, 0);
  auto target = vitfreeze::mim::normalize_patches(vitfreeze::mim::patchify(images, 2));
  auto panels = vitfreeze::mim::reconstruction_panels(images, target, masks, 2, true, norm);
  REQUIRE(panels.size() == 6);
  for (int b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 64; ++i) CHECK(panels[std::size_t(3 * b + 2)][i] == doctest::Approx(panels[std::size_t(3 * b)][i]).epsilon(1e-4));
  // the masked view is grey (0.5) exactly on removed patches
  const std::int64_t l = masks.ids_shuffle.at(0, 15);  // a removed patch of sample 0
  const std::int64_t y = (l / 4) * 2, x = (l % 4) * 2;
  CHECK(panels[1][y * 8 + x] == doctest::Approx(0.5));
}
