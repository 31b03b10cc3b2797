#pragma once
// Masking policies: which patches an encoder sees. A policy is a type; MaskSet is what it produces.
//
//   Random<RatioPerMille>      MAE: per-sample argsort of uniform noise, keep the first K.
//   Block<RatioPerMille>       BEiT-style block-wise masking with an exact masked count.
//   Window<K, M, RatioPerMille, Pairing>   LoMaR: M windows of K x K patches, masking inside each
//                              (WindowRatio: the same with its numbers chosen at run time).
//   SplitView<RatioPerMille>   MiCL: MAE-style keep list (even length) split into two disjoint views.
//
// Ratios are integers per mille (Random<750> = 75 %): floating-point template arguments need
// g++ or clang >= 18, and the project decided on per mille everywhere.
//
// Determinism: every random draw comes from RandomStream keyed (seed, purpose, step, sample), so a
// mask depends only on (seed, step, global sample index) — not on threads, ranks or backends. A
// caller sharding a batch over ranks passes the rank's first global sample as `first_sample`.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::mim {

// ---- counts ---------------------------------------------------------------------------------------

// Visible patches: floor(L * (1 - r)) evaluated in double exactly like the reference Python
// (`int(L * (1 - mask_ratio))`), so r = 0.9, L = 196 gives 19 (196 * 0.1000...0022 = 19.5999...).
// per_mille / 1000.0 is the correctly rounded double of the ratio, i.e. the same value as the literal.
constexpr int kept_count(int patches, int per_mille) {
  const double ratio = per_mille / 1000.0;
  return static_cast<int>(patches * (1.0 - ratio));  // truncation == floor: the value is >= 0
}
// Masked patches counted the LoMaR way: floor(L * r) (49 cells at 0.8 -> 39 masked, 10 visible,
// while kept_count(49, 800) would give 9).
constexpr int masked_count(int patches, int per_mille) { return static_cast<int>(patches * (per_mille / 1000.0)); }
// MiCL: the keep list rounded down to an even length so it splits into two equal views.
constexpr int even_kept_count(int patches, int per_mille) { return kept_count(patches, per_mille) / 2 * 2; }

static_assert(kept_count(196, 750) == 49 && kept_count(196, 800) == 39 && kept_count(196, 900) == 19);
static_assert(masked_count(49, 800) == 39 && even_kept_count(196, 900) == 18);

// ---- the result of a policy -----------------------------------------------------------------------

// Masks for one batch. A "sequence" is what one encoder pass sees: an image for global policies, one
// (image, window) pair for window policies. Positions are patch indices for global policies and
// window cells (row-major inside the window) for window policies.
struct MaskSet {
  int images = 0;   // images in the batch
  int batch = 0;    // sequences (= images, except window policies: images x windows)
  int patches = 0;  // positions per sequence, L
  int keep = 0;     // visible positions per sequence, K
  int views = 1;    // ids_keep splits into `views` consecutive equal parts (SplitView: 2)

  Tensor<std::int32_t> ids_shuffle;  // [batch, L]: visible positions first (= ids_keep), then removed
  Tensor<std::int32_t> ids_keep;     // [batch, K]: the first K of ids_shuffle, in that order
  Tensor<std::int32_t> ids_restore;  // [batch, L]: inverse permutation, ids_shuffle[ids_restore[l]] = l
  Tensor<std::uint8_t> mask;         // [batch, L]: 1 = removed, in position order

  // Window policies only; empty otherwise (then sequence b is image b and position l is patch l).
  Tensor<std::int32_t> source_image;   // [batch]: the image sequence b reads
  Tensor<std::int32_t> source_patch;   // [batch, L]: the grid patch at each window cell
  Tensor<std::int32_t> window_origin;  // [windows, 2]: (top, left) patch of each window

  int masked() const { return patches - keep; }
  int view_size() const { return keep / views; }

  // The mask as 0/1 values of T, e.g. for weighting a loss.
  template <class T>
  Tensor<T> mask_as() const {
    Tensor<T> out(mask.shape());
    for (std::int64_t i = 0; i < out.numel(); ++i) out[i] = static_cast<T>(mask[i]);
    return out;
  }
};

// ---- the policy concept ---------------------------------------------------------------------------

// A masking policy provides
//   MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
//                std::uint32_t first_sample) const
//     (static is fine; `first_sample` may have a default, ours default to 0), returning a MaskSet whose
//     ids_shuffle rows are permutations, ids_restore their inverses, ids_keep the first `keep`
//     entries and mask the complement of ids_keep; the same arguments give the same MaskSet.
//     `first_sample` is the global index of the batch's first sample: the trainer passes it so that
//     accumulated micro-batches and data-parallel ranks draw the masks one big batch would;
//   int kept(int grid_h, int grid_w) const (static constexpr in ours): visible positions per sequence,
//     so an objective can size its buffers (and static_assert on them) before the first batch.
template <class P>
concept MaskingPolicy = requires(const P& policy, int batch, int grid_h, int grid_w, std::uint64_t seed,
                                 std::uint64_t step, std::uint32_t first_sample) {
  { policy.make(batch, grid_h, grid_w, seed, step, first_sample) } -> std::same_as<MaskSet>;
  { policy.kept(grid_h, grid_w) } -> std::same_as<int>;
};

// ---- shared machinery -----------------------------------------------------------------------------

namespace detail {

// RandomStream packs the sample coordinate next to the purpose byte: it must stay below 2^24.
inline constexpr std::int64_t kMaxSampleKey = std::int64_t(1) << 24;

inline void check_sample_keys(std::int64_t end, const char* who) {
  if (end > kMaxSampleKey)
    throw ConfigError(std::string(who) + ": sample index " + std::to_string(end) + " exceeds 2^24");
}

inline MaskSet allocate_mask_set(int images, int batch, int patches, int keep, int views) {
  if (batch < 0 || patches < 1 || keep < 0 || keep > patches)
    throw ConfigError("MaskSet: invalid counts (batch " + std::to_string(batch) + ", patches " +
                      std::to_string(patches) + ", keep " + std::to_string(keep) + ")");
  MaskSet m;
  m.images = images;
  m.batch = batch;
  m.patches = patches;
  m.keep = keep;
  m.views = views;
  m.ids_shuffle = Tensor<std::int32_t>(Shape{batch, patches});
  m.ids_keep = Tensor<std::int32_t>(Shape{batch, keep});
  m.ids_restore = Tensor<std::int32_t>(Shape{batch, patches});
  m.mask = Tensor<std::uint8_t>(Shape{batch, patches});
  return m;
}

// Derives ids_keep, ids_restore and mask of row b from its ids_shuffle.
inline void complete_row(const MaskSet& m, std::int64_t b) {
  const std::int64_t L = m.patches, K = m.keep;
  const std::int32_t* shuffle = m.ids_shuffle.data() + b * L;
  std::int32_t* restore = m.ids_restore.data() + b * L;
  std::uint8_t* mask = m.mask.data() + b * L;
  std::copy(shuffle, shuffle + K, m.ids_keep.data() + b * K);
  for (std::int64_t r = 0; r < L; ++r) {
    restore[shuffle[r]] = static_cast<std::int32_t>(r);
    mask[shuffle[r]] = r < K ? 0 : 1;
  }
}

// ids_shuffle = argsort of L uniform draws, ties broken by position (stable). The noise of position
// l is the l-th next_u32() of the stream: exact integers, so every backend sorts identically.
// `keys` is caller-provided scratch of L entries.
inline void argsort_noise(RandomStream stream, std::int64_t L, std::uint64_t* keys, std::int32_t* ids_shuffle) {
  for (std::int64_t l = 0; l < L; ++l) keys[l] = std::uint64_t(stream.next_u32()) << 32 | std::uint64_t(l);
  std::sort(keys, keys + L);
  for (std::int64_t l = 0; l < L; ++l) ids_shuffle[l] = static_cast<std::int32_t>(keys[l] & 0xffffffffu);
}

// MAE masking with an explicit keep count (Random and SplitView differ only in the count).
inline MaskSet random_masks(int batch, int patches, int keep, int views, std::uint64_t seed, std::uint64_t step,
                            std::uint32_t first_sample) {
  check_sample_keys(std::int64_t(first_sample) + batch, "random masking");
  MaskSet m = allocate_mask_set(batch, batch, patches, keep, views);
  std::vector<std::uint64_t> keys(std::size_t(batch) * patches);
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < batch; ++b) {
    argsort_noise(RandomStream(seed, RngPurpose::mask, step, first_sample + std::uint32_t(b)), patches,
                  keys.data() + b * patches, m.ids_shuffle.data() + b * patches);
    complete_row(m, b);
  }
  return m;
}

}  // namespace detail

// ---- Random (MAE) ---------------------------------------------------------------------------------

template <int RatioPerMille>
struct Random {
  static_assert(RatioPerMille >= 0 && RatioPerMille <= 1000, "Random: ratio is per mille, in [0, 1000]");
  static constexpr const char* name = "random";
  static constexpr int ratio_per_mille = RatioPerMille;

  static constexpr int kept(int grid_h, int grid_w) { return kept_count(grid_h * grid_w, RatioPerMille); }

  static MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
                      std::uint32_t first_sample = 0) {
    return detail::random_masks(batch, grid_h * grid_w, kept(grid_h, grid_w), 1, seed, step, first_sample);
  }
};

// Random masking with the ratio chosen at run time (command-line tools); same draws as Random<R>,
// and with views = 2 as SplitView<R> (the keep list rounded down to a multiple of the views).
struct RandomRatio {
  static constexpr const char* name = "random";
  int ratio_per_mille = 750;
  int views = 1;
  int kept(int grid_h, int grid_w) const { return kept_count(grid_h * grid_w, ratio_per_mille) / views * views; }
  MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
               std::uint32_t first_sample = 0) const {
    if (ratio_per_mille <= 0 || ratio_per_mille >= 1000)
      throw ConfigError("RandomRatio: mask ratio must lie strictly between 0 and 1");
    if (views < 1 || kept(grid_h, grid_w) < views)
      throw ConfigError("RandomRatio: " + std::to_string(kept_count(grid_h * grid_w, ratio_per_mille)) +
                        " visible patches do not make " + std::to_string(views) + " views");
    return detail::random_masks(batch, grid_h * grid_w, kept(grid_h, grid_w), views, seed, step, first_sample);
  }
};

// ---- SplitView (MiCL) -----------------------------------------------------------------------------

// Keep list of even length n = 2*floor(floor(L(1-r))/2); view 1 = ids_keep[:, :n/2], view 2 =
// ids_keep[:, n/2:], disjoint by construction (r = 0.9, L = 196: 18 kept, 9 per view).
template <int RatioPerMille>
struct SplitView {
  static_assert(RatioPerMille >= 0 && RatioPerMille <= 1000, "SplitView: ratio is per mille, in [0, 1000]");
  static constexpr const char* name = "split_view";
  static constexpr int ratio_per_mille = RatioPerMille;
  static constexpr int views = 2;

  static constexpr int kept(int grid_h, int grid_w) { return even_kept_count(grid_h * grid_w, RatioPerMille); }
  static constexpr int view_size(int grid_h, int grid_w) { return kept(grid_h, grid_w) / 2; }

  static MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
                      std::uint32_t first_sample = 0) {
    return detail::random_masks(batch, grid_h * grid_w, kept(grid_h, grid_w), views, seed, step, first_sample);
  }
};

// ---- Block (BEiT-style) ---------------------------------------------------------------------------

// Rectangles of random area in [MinBlock, remaining] (at least MinBlock) and aspect ratio
// log-uniform in [0.3, 1/0.3] are placed uniformly until exactly L - K patches are masked.
// Exactness: a rectangle adding more new patches than still needed is *clipped* — only its first
// `remaining` unmasked cells in row-major order are masked (still one connected piece) — instead of
// being rejected as in BEiT, which can stop short. If 10 draws in a row add nothing (the rest of the
// grid is already covered or no rectangle fits), one uniformly chosen unmasked patch is masked, so
// the loop always terminates. Visible ids are listed in ascending patch order, then removed ones.
template <int RatioPerMille, int MinBlock = 16>
struct Block {
  static_assert(RatioPerMille >= 0 && RatioPerMille <= 1000, "Block: ratio is per mille, in [0, 1000]");
  static_assert(MinBlock >= 1, "Block: minimum block area must be >= 1");
  static constexpr const char* name = "block";
  static constexpr int ratio_per_mille = RatioPerMille;
  static constexpr int min_block = MinBlock;
  static constexpr int attempts_per_block = 10;
  static constexpr double min_aspect = 0.3;

  static constexpr int kept(int grid_h, int grid_w) { return kept_count(grid_h * grid_w, RatioPerMille); }

  static MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
                      std::uint32_t first_sample = 0) {
    if (grid_h < 1 || grid_w < 1) throw ConfigError("Block masking: empty grid");
    detail::check_sample_keys(std::int64_t(first_sample) + batch, "block masking");
    const int L = grid_h * grid_w, K = kept(grid_h, grid_w);
    MaskSet m = detail::allocate_mask_set(batch, batch, L, K, 1);
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < batch; ++b) {
      RandomStream rng(seed, RngPurpose::mask, step, first_sample + std::uint32_t(b));
      std::uint8_t* grid = m.mask.data() + b * L;  // built in place, then re-derived below
      mask_blocks(rng, grid_h, grid_w, L - K, grid);
      std::int32_t* shuffle = m.ids_shuffle.data() + b * L;
      std::int32_t visible = 0, removed = K;
      for (int l = 0; l < L; ++l) shuffle[grid[l] ? removed++ : visible++] = l;
      detail::complete_row(m, b);
    }
    return m;
  }

 private:
  // Marks exactly `target` cells of the zeroed grid with 1.
  static void mask_blocks(RandomStream& rng, int gh, int gw, int target, std::uint8_t* grid) {
    const double log_lo = std::log(min_aspect), log_hi = std::log(1.0 / min_aspect);
    int done = 0;
    while (done < target) {
      const int remaining = target - done;
      int added = 0;
      for (int attempt = 0; attempt < attempts_per_block && added == 0; ++attempt) {
        const double area = MinBlock + rng.uniform() * std::max(0, remaining - MinBlock);
        const double aspect = std::exp(log_lo + rng.uniform() * (log_hi - log_lo));
        const int h = std::max(1, int(std::lround(std::sqrt(area * aspect))));
        const int w = std::max(1, int(std::lround(std::sqrt(area / aspect))));
        if (h > gh || w > gw) continue;
        const int top = int(rng.below(std::uint32_t(gh - h + 1)));
        const int left = int(rng.below(std::uint32_t(gw - w + 1)));
        for (int r = top; r < top + h && added < remaining; ++r)
          for (int c = left; c < left + w && added < remaining; ++c)
            if (!grid[r * gw + c]) {
              grid[r * gw + c] = 1;
              ++added;
            }
      }
      if (added == 0) {  // no rectangle helped: mask one random unmasked cell
        int pick = int(rng.below(std::uint32_t(gh * gw - done)));
        for (int l = 0; l < gh * gw; ++l)
          if (!grid[l] && pick-- == 0) {
            grid[l] = 1;
            added = 1;
            break;
          }
      }
      done += added;
    }
  }
};

// ---- Window (LoMaR) -------------------------------------------------------------------------------

// Which (image, window) pairs the N*M sequences are. Sequence s always reads image s mod N.
//   distinct:   window s / N — every image gets all M windows (the evident intent).
//   lomar_code: window s mod M — the released code's pairing; with N divisible by M, image n gets
//               window n mod M, M times with different masks (spec §2.4 "batch layout quirk").
enum class WindowPairing { distinct, lomar_code };

namespace detail {

inline bool windows_fit(int K, int M, int grid_h, int grid_w) {
  return K <= grid_h && K <= grid_w && M <= grid_h - K + 1 && M <= grid_w - K + 1;
}

// The windows of Window<K, M, r, pairing> with its numbers given at run time.
inline MaskSet window_masks(int K, int M, int per_mille, WindowPairing pairing, int batch, int grid_h, int grid_w,
                            std::uint64_t seed, std::uint64_t step, std::uint32_t first_sample) {
  if (K < 1 || M < 1 || per_mille < 0 || per_mille > 1000)
    throw ConfigError("Window masking: need a window side and count >= 1 and a ratio in [0, 1]");
  if (!windows_fit(K, M, grid_h, grid_w))
    throw ConfigError("Window masking: " + std::to_string(M) + " windows of " + std::to_string(K) + "x" +
                      std::to_string(K) + " need distinct tops and lefts on a " + std::to_string(grid_h) + "x" +
                      std::to_string(grid_w) + " grid");
  check_sample_keys((std::int64_t(first_sample) + batch) * M, "window masking");
  const int S = batch * M, cells = K * K;
  MaskSet m = allocate_mask_set(batch, S, cells, cells - masked_count(cells, per_mille), 1);
  m.window_origin = Tensor<std::int32_t>(Shape{M, 2});
  m.source_image = Tensor<std::int32_t>(Shape{S});
  m.source_patch = Tensor<std::int32_t>(Shape{S, cells});

  // Windows: one stream per step (not per sample), so all images and ranks share them.
  RandomStream wrng(seed, RngPurpose::window, step, 0);
  std::vector<std::int32_t> perm;
  for (int axis = 0; axis < 2; ++axis) {
    const int positions = (axis == 0 ? grid_h : grid_w) - K + 1;
    perm.resize(positions);
    for (int i = 0; i < positions; ++i) perm[i] = i;
    for (int i = positions - 1; i > 0; --i) std::swap(perm[i], perm[wrng.below(std::uint32_t(i + 1))]);
    for (int w = 0; w < M; ++w) m.window_origin.at(w, axis) = perm[w];
  }

  std::vector<std::uint64_t> keys(std::size_t(S) * cells);
#pragma omp parallel for schedule(static)
  for (std::int64_t s = 0; s < S; ++s) {
    const std::int64_t image = s % batch, occurrence = s / batch;
    const std::int64_t w = pairing == WindowPairing::distinct ? occurrence : s % M;
    m.source_image[s] = static_cast<std::int32_t>(image);
    const std::int32_t top = m.window_origin.at(w, 0), left = m.window_origin.at(w, 1);
    for (int a = 0; a < K; ++a)
      for (int c = 0; c < K; ++c) m.source_patch[s * cells + a * K + c] = (top + a) * grid_w + left + c;
    // Keyed by (global image, occurrence): with distinct pairing independent of the rank split.
    const auto key = std::uint32_t((first_sample + image) * M + occurrence);
    argsort_noise(RandomStream(seed, RngPurpose::mask, step, key), cells, keys.data() + s * cells,
                  m.ids_shuffle.data() + s * cells);
    complete_row(m, s);
  }
  return m;
}

}  // namespace detail

// M windows of K x K patches per step, shared by every image of the batch: tops = the first M of a
// random permutation of {0..h-K}, lefts = the first M of an independent permutation of {0..w-K}
// (so tops are pairwise distinct, lefts too; windows may overlap). Inside each sequence
// floor(K*K*r) cells are masked by MAE-style argsort (K = 7, r = 0.8: 39 of 49 masked, 10 visible).
// Positions are window cells in row-major order; source_patch maps them to grid patches.
template <int K, int M, int RatioPerMille, WindowPairing Pairing = WindowPairing::distinct>
struct Window {
  static_assert(K >= 1 && M >= 1, "Window: window side and count must be >= 1");
  static_assert(RatioPerMille >= 0 && RatioPerMille <= 1000, "Window: ratio is per mille, in [0, 1000]");
  static constexpr const char* name = "window";
  static constexpr int window = K;
  static constexpr int windows = M;
  static constexpr int ratio_per_mille = RatioPerMille;
  static constexpr WindowPairing pairing = Pairing;
  static constexpr int cells = K * K;

  static constexpr int kept(int /*grid_h*/, int /*grid_w*/) { return cells - masked_count(cells, RatioPerMille); }
  static constexpr bool fits(int grid_h, int grid_w) { return detail::windows_fit(K, M, grid_h, grid_w); }

  static MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
                      std::uint32_t first_sample = 0) {
    return detail::window_masks(K, M, RatioPerMille, Pairing, batch, grid_h, grid_w, seed, step, first_sample);
  }
};

// Window masking with its numbers chosen at run time (command-line tools); same draws as
// Window<window, windows, ratio_per_mille, pairing>.
struct WindowRatio {
  static constexpr const char* name = "window";
  int window = 7, windows = 4, ratio_per_mille = 800;
  WindowPairing pairing = WindowPairing::distinct;

  int kept(int /*grid_h*/, int /*grid_w*/) const { return window * window - masked_count(window * window, ratio_per_mille); }
  bool fits(int grid_h, int grid_w) const { return detail::windows_fit(window, windows, grid_h, grid_w); }
  MaskSet make(int batch, int grid_h, int grid_w, std::uint64_t seed, std::uint64_t step,
               std::uint32_t first_sample = 0) const {
    return detail::window_masks(window, windows, ratio_per_mille, pairing, batch, grid_h, grid_w, seed, step, first_sample);
  }
};

static_assert(MaskingPolicy<Random<750>> && MaskingPolicy<Block<750>> && MaskingPolicy<SplitView<900>> &&
              MaskingPolicy<Window<7, 4, 800>> && MaskingPolicy<RandomRatio> && MaskingPolicy<WindowRatio>);

}  // namespace vitfreeze::mim
