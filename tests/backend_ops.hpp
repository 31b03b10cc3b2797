#pragma once
// One table of backend kernels, each checked on a backend against a reference written here as
// plain double loops (independent of backend/cpu), in two modes:
//   value     every output against the reference; written outputs are poisoned with NaN before
//             the call (an element the kernel forgets stays NaN and fails), accumulated outputs
//             start from random values that are subtracted afterwards (a kernel that overwrites
//             instead of adding fails);
//   gradient  the backward kernels against central finite differences of the reference forward,
//             for L = sum_o <dout_o, out_o> with random dout.
// A backend declines an optional kernel explicitly (OpCase::declined says why); nothing is skipped
// silently. The table is generic over the backend and its element type, so any backend's test TU
// instantiates it (tests/test_backend_ops.cpp: Cpu in double and float; tests/cuda/
// test_cuda_backend_ops.cu: Cuda in fp32).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "vitfreeze/backend/backend.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

namespace vitfreeze::testing::backend_ops {

using Tensors = std::vector<Tensor<double>>;

struct OpCase {
  std::string name;
  Tensors inputs;                  // host, double (ids and shapes live in the closures)
  std::vector<int> differentiable;  // indices into inputs that gradient mode checks
  int loss_outputs = -1;           // outputs entering L in gradient mode (-1: all)
  std::function<Tensors(const Tensors&)> reference;
  std::function<Tensors(const Tensors&)> forward;                   // on the backend
  std::function<Tensors(const Tensors&, const Tensors&)> backward;  // (inputs, douts) -> d(differentiable)
  std::string declined;            // non-empty: the backend does not have this kernel, and why
};

inline OpCase op_case(std::string name, Tensors inputs, std::vector<int> differentiable) {
  OpCase c;
  c.name = std::move(name);
  c.inputs = std::move(inputs);
  c.differentiable = std::move(differentiable);
  return c;
}

// Host <-> backend arrays of element type T, from and to double.
template <class B, class T>
struct Device {
  typename B::Context* ctx;
  using Array = typename B::template Array<T>;

  Array in(const Tensor<double>& h) const {
    Tensor<T> t(h.shape());
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = T(h[i]);
    return B::upload(*ctx, t);
  }
  Array poisoned(const Shape& s) const {
    Tensor<T> t(s);
    t.fill(std::numeric_limits<T>::quiet_NaN());
    return B::upload(*ctx, t);
  }
  typename B::template Array<std::int32_t> ids(const Tensor<std::int32_t>& h) const { return B::upload(*ctx, h); }
  Tensor<double> out(const Array& a) const {
    Tensor<T> t(a.shape());
    B::download(*ctx, a, t);
    Tensor<double> d(a.shape());
    for (std::int64_t i = 0; i < d.numel(); ++i) d[i] = double(t[i]);
    return d;
  }
  // An accumulated output: starts at `prior`, returned minus it (what the kernel added).
  Tensor<double> added(const Array& a, const Tensor<double>& prior) const {
    Tensor<double> d = out(a);
    for (std::int64_t i = 0; i < d.numel(); ++i) d[i] -= prior[i];
    return d;
  }
};

// ---- references (plain loops, double) --------------------------------------------------------
inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
inline double gelu_grad(double x) {
  return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
}

// C[M, N] = alpha op(A) op(B) + beta C0 (+ bias[n]); A stored [M, K] or [K, M] (trans), B likewise.
inline Tensor<double> gemm_reference(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha,
                                     const Tensor<double>& A, const Tensor<double>& Bm, double beta,
                                     const Tensor<double>* C0, const Tensor<double>* bias) {
  Tensor<double> C(Shape{M, N});
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (std::int64_t k = 0; k < K; ++k) s += (ta ? A[k * M + m] : A[m * K + k]) * (tb ? Bm[n * K + k] : Bm[k * N + n]);
      C[m * N + n] = alpha * s + (C0 ? beta * (*C0)[m * N + n] : 0.0) + (bias ? (*bias)[n] : 0.0);
    }
  return C;
}

// Attention over qkv [B, T, 3 H hd] (q, k, v blocks, heads consecutive): logits q.k / sqrt(hd)
// (+ q . table[:, bucket[i, j]], not scaled: LoMaR's iRPE), softmax over keys, times v.
inline Tensor<double> attention_reference(const Tensor<double>& qkv, const AttentionShape& s, bool logits_only,
                                          const Tensor<double>* table = nullptr,
                                          const Tensor<std::int32_t>* bucket = nullptr, std::int64_t buckets = 0) {
  const std::int64_t T = s.tokens, H = s.heads, hd = s.head_dim, D = s.dim();
  Tensor<double> out(logits_only ? Shape{s.batch, H, T, T} : Shape{s.batch, T, D});
  std::vector<double> row(static_cast<std::size_t>(T));
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < T; ++i) {
        const double* q = &qkv[(b * T + i) * 3 * D + h * hd];
        double top = -1e300;
        for (std::int64_t j = 0; j < T; ++j) {
          const double* k = &qkv[(b * T + j) * 3 * D + D + h * hd];
          double l = 0;
          for (std::int64_t e = 0; e < hd; ++e) l += q[e] * k[e];
          l /= std::sqrt(double(hd));
          if (table)
            for (std::int64_t e = 0; e < hd; ++e) l += q[e] * (*table)[e * buckets + (*bucket)[i * T + j]];
          row[std::size_t(j)] = l;
          top = std::max(top, l);
        }
        if (logits_only) {
          for (std::int64_t j = 0; j < T; ++j) out[((b * H + h) * T + i) * T + j] = row[std::size_t(j)];
          continue;
        }
        double z = 0;
        for (auto& l : row) z += (l = std::exp(l - top));
        for (std::int64_t e = 0; e < hd; ++e) {
          double acc = 0;
          for (std::int64_t j = 0; j < T; ++j) acc += row[std::size_t(j)] / z * qkv[(b * T + j) * 3 * D + 2 * D + h * hd + e];
          out[(b * T + i) * D + h * hd + e] = acc;
        }
      }
  return out;
}

// LayerNorm over rows of x [R, C]: y, mean [R], rstd [R] (biased variance, eps inside the root).
inline Tensors layernorm_reference(const Tensor<double>& x, const Tensor<double>& gamma, const Tensor<double>& beta,
                                   double eps) {
  const std::int64_t R = x.shape().rows(), C = x.shape().cols();
  Tensor<double> y(x.shape()), mean(Shape{R}), rstd(Shape{R});
  for (std::int64_t r = 0; r < R; ++r) {
    double m = 0, v = 0;
    for (std::int64_t c = 0; c < C; ++c) m += x[r * C + c];
    m /= double(C);
    for (std::int64_t c = 0; c < C; ++c) v += (x[r * C + c] - m) * (x[r * C + c] - m);
    const double rs = 1.0 / std::sqrt(v / double(C) + eps);
    for (std::int64_t c = 0; c < C; ++c) y[r * C + c] = (x[r * C + c] - m) * rs * gamma[c] + beta[c];
    mean[r] = m, rstd[r] = rs;
  }
  return {y, mean, rstd};
}

inline Tensor<std::int32_t> permutation_ids(std::int64_t B, std::int64_t L, std::int64_t K, std::uint64_t seed) {
  Tensor<std::int32_t> ids(Shape{B, K});
  const Tensor<double> keys = random_tensor<double>({B, L}, seed);
  for (std::int64_t b = 0; b < B; ++b) {
    std::vector<std::int32_t> order(static_cast<std::size_t>(L));
    for (std::int64_t l = 0; l < L; ++l) order[std::size_t(l)] = std::int32_t(l);
    std::sort(order.begin(), order.end(), [&](int x, int y) { return keys[b * L + x] < keys[b * L + y]; });
    for (std::int64_t k = 0; k < K; ++k) ids[b * K + k] = order[std::size_t(k)];
  }
  return ids;
}

// ---- the table -------------------------------------------------------------------------------
template <Backend B, PrecisionPolicy P>
std::vector<OpCase> op_table(typename B::Context& ctx) {
  using T = typename P::Activation;
  const Device<B, T> dev{&ctx};
  using Array = typename Device<B, T>::Array;
  std::vector<OpCase> table;
  std::uint64_t seed = 100;
  auto rnd = [&](const Shape& s, double lo = -1.0, double hi = 1.0) { return random_tensor<double>(s, ++seed, lo, hi); };

  {  // Linear as the models run it: y = x W^T + b (bias epilogue); dx = dy W, dW = dy^T x with db
     // from the bias-gradient epilogue.
    constexpr std::int64_t R = 7, I = 5, O = 6;
    OpCase c = op_case("gemm: linear (NT + bias epilogue) and its backward (NN, TN + bias-gradient epilogue)",
             {rnd({R, I}), rnd({O, I}), rnd({O})}, {0, 1, 2});
    c.reference = [=](const Tensors& in) {
      return Tensors{gemm_reference(false, true, R, O, I, 1.0, in[0], in[1], 0.0, nullptr, &in[2])};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), w = dev.in(in[1]), b = dev.in(in[2]), y = dev.poisoned(Shape{R, O});
      B::gemm(*dev.ctx, false, true, R, O, I, 1.0, x.data(), I, w.data(), I, 0.0, y.data(), O,
              GemmEpilogue<T>{Epilogue::bias, b.data()});
      return Tensors{dev.out(y)};
    };
    c.backward = [=](const Tensors& in, const Tensors& d) {
      Array x = dev.in(in[0]), w = dev.in(in[1]), dy = dev.in(d[0]);
      Array dx = dev.poisoned(Shape{R, I}), dw = dev.poisoned(Shape{O, I}), db = dev.poisoned(Shape{O});
      B::gemm(*dev.ctx, false, false, R, I, O, 1.0, dy.data(), O, w.data(), I, 0.0, dx.data(), I, GemmEpilogue<T>{});
      GemmEpilogue<T> bgrad{Epilogue::bgradb};
      bgrad.bias_grad = db.data();
      B::gemm(*dev.ctx, true, false, O, I, R, 1.0, dy.data(), O, x.data(), I, 0.0, dw.data(), I, bgrad);
      return Tensors{dev.out(dx), dev.out(dw), dev.out(db)};
    };
    table.push_back(c);
  }
  {  // alpha and beta: C = 0.5 A^T B + 1.5 C0 (TN, C accumulated), value mode.
    constexpr std::int64_t M = 4, N = 9, K = 6;
    OpCase c = op_case("gemm: TN with alpha 0.5 and beta 1.5", {rnd({K, M}), rnd({K, N}), rnd({M, N})}, {});
    c.reference = [=](const Tensors& in) {
      return Tensors{gemm_reference(true, false, M, N, K, 0.5, in[0], in[1], 1.5, &in[2], nullptr)};
    };
    c.forward = [=](const Tensors& in) {
      Array a = dev.in(in[0]), b = dev.in(in[1]), cc = dev.in(in[2]);
      B::gemm(*dev.ctx, true, false, M, N, K, 0.5, a.data(), M, b.data(), N, 1.5, cc.data(), N, GemmEpilogue<T>{});
      return Tensors{dev.out(cc)};
    };
    table.push_back(c);
  }
  {  // The MLP's first half: pre = x W^T + b kept in aux, y = gelu(pre); backward with the dGELU
     // epilogue: d(pre) = (dy W) * gelu'(aux)  (here for the input x of the next GEMM: dy [R, O]).
    constexpr std::int64_t R = 5, I = 4, O = 6;
    OpCase c = op_case("gemm: GELU epilogue (aux = pre-activation) and dGELU epilogue", {rnd({R, I}), rnd({O, I}), rnd({O})}, {0});
    c.loss_outputs = 1;
    c.reference = [=](const Tensors& in) {
      Tensor<double> pre = gemm_reference(false, true, R, O, I, 1.0, in[0], in[1], 0.0, nullptr, &in[2]);
      Tensor<double> y(pre.shape());
      for (std::int64_t i = 0; i < y.numel(); ++i) y[i] = gelu(pre[i]);
      return Tensors{y, pre};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), w = dev.in(in[1]), b = dev.in(in[2]);
      Array y = dev.poisoned(Shape{R, O}), aux = dev.poisoned(Shape{R, O});
      B::gemm(*dev.ctx, false, true, R, O, I, 1.0, x.data(), I, w.data(), I, 0.0, y.data(), O,
              GemmEpilogue<T>{Epilogue::gelu_aux_bias, b.data(), aux.data(), O});
      return Tensors{dev.out(y), dev.out(aux)};
    };
    // d(x) = (dy * gelu'(pre)) W: the dGELU epilogue on dy I_O (an identity GEMM), then dx.
    c.backward = [=](const Tensors& in, const Tensors& d) {
      Tensor<double> pre = gemm_reference(false, true, R, O, I, 1.0, in[0], in[1], 0.0, nullptr, &in[2]);
      Tensor<double> eye(Shape{O, O});
      eye.zero();
      for (std::int64_t i = 0; i < O; ++i) eye[i * O + i] = 1.0;
      Array dy = dev.in(d[0]), id = dev.in(eye), aux = dev.in(pre), w = dev.in(in[1]);
      Array dpre = dev.poisoned(Shape{R, O}), dx = dev.poisoned(Shape{R, I});
      B::gemm(*dev.ctx, false, false, R, O, O, 1.0, dy.data(), O, id.data(), O, 0.0, dpre.data(), O,
              GemmEpilogue<T>{Epilogue::dgelu, nullptr, aux.data(), O});
      B::gemm(*dev.ctx, false, false, R, I, O, 1.0, dpre.data(), O, w.data(), I, 0.0, dx.data(), I, GemmEpilogue<T>{});
      return Tensors{dev.out(dx)};
    };
    table.push_back(c);
  }
  {  // GELU kernels: y = gelu(x); dx += dy gelu'(x).
    constexpr std::int64_t n = 37;
    OpCase c = op_case("gelu_forward / gelu_backward (accumulating)", {rnd({n}, -4.0, 4.0)}, {0});
    c.reference = [=](const Tensors& in) {
      Tensor<double> y(in[0].shape());
      for (std::int64_t i = 0; i < n; ++i) y[i] = gelu(in[0][i]);
      return Tensors{y};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), y = dev.poisoned(Shape{n});
      B::gelu_forward(*dev.ctx, x.data(), y.data(), n);
      return Tensors{dev.out(y)};
    };
    const Tensor<double> prior = rnd({n});
    c.backward = [=](const Tensors& in, const Tensors& d) {
      Array x = dev.in(in[0]), dy = dev.in(d[0]), dx = dev.in(prior);
      B::gelu_backward(*dev.ctx, dy.data(), x.data(), dx.data(), n);
      return Tensors{dev.added(dx, prior)};
    };
    table.push_back(c);
  }
  {  // y += table broadcast over rows; out[c] += column sums.
    constexpr std::int64_t R = 5, V = 7;
    OpCase c = op_case("add_in_place, add_broadcast_in_place, add_column_sums (accumulating)",
             {rnd({R, V}), rnd({R, V}), rnd({V}), rnd({V})}, {});
    c.reference = [=](const Tensors& in) {
      Tensor<double> sum(Shape{R, V}), bcast(Shape{R, V}), cols(Shape{V});
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t p = 0; p < V; ++p) {
          sum[r * V + p] = in[0][r * V + p] + in[1][r * V + p];
          bcast[r * V + p] = in[0][r * V + p] + in[2][p];
        }
      for (std::int64_t p = 0; p < V; ++p) {
        cols[p] = in[3][p];
        for (std::int64_t r = 0; r < R; ++r) cols[p] += in[0][r * V + p];
      }
      return Tensors{sum, bcast, cols};
    };
    c.forward = [=](const Tensors& in) {
      Array y = dev.in(in[0]), x = dev.in(in[1]), y2 = dev.in(in[0]), t = dev.in(in[2]), cols = dev.in(in[3]);
      B::add_in_place(*dev.ctx, y.data(), x.data(), R * V);
      B::add_broadcast_in_place(*dev.ctx, y2.data(), t.data(), V, R * V);
      Array src = dev.in(in[0]);
      B::add_column_sums(*dev.ctx, src.data(), R, V, cols.data());
      return Tensors{dev.out(y), dev.out(y2), dev.out(cols)};
    };
    table.push_back(c);
  }
  {  // LayerNorm: y, mean, rstd; backward accumulates dx, dgamma, dbeta.
    constexpr std::int64_t R = 6, C = 8;
    OpCase c = op_case("layernorm_forward (y, mean, rstd) / layernorm_backward (accumulating)",
             {rnd({R, C}, -2.0, 2.0), rnd({C}, 0.5, 1.5), rnd({C})}, {0, 1, 2});
    c.loss_outputs = 1;
    c.reference = [=](const Tensors& in) { return layernorm_reference(in[0], in[1], in[2], kLayerNormEps); };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), g = dev.in(in[1]), b = dev.in(in[2]);
      Array y = dev.poisoned(Shape{R, C}), mean = dev.poisoned(Shape{R}), rstd = dev.poisoned(Shape{R});
      B::layernorm_forward(*dev.ctx, x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), R, C,
                           kLayerNormEps);
      return Tensors{dev.out(y), dev.out(mean), dev.out(rstd)};
    };
    const Tensor<double> px = rnd({R, C}), pg = rnd({C}), pb = rnd({C});
    c.backward = [=](const Tensors& in, const Tensors& d) {
      const Tensors stats = layernorm_reference(in[0], in[1], in[2], kLayerNormEps);
      Array x = dev.in(in[0]), g = dev.in(in[1]), dy = dev.in(d[0]), mean = dev.in(stats[1]), rstd = dev.in(stats[2]);
      Array dx = dev.in(px), dg = dev.in(pg), db = dev.in(pb);
      B::layernorm_backward(*dev.ctx, dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(), dg.data(),
                            db.data(), R, C);
      return Tensors{dev.added(dx, px), dev.added(dg, pg), dev.added(db, pb)};
    };
    table.push_back(c);
  }
  {  // Residual add fused with the LayerNorm after it: sum = x + residual, y = LN(sum).
    constexpr std::int64_t R = 5, C = 8;
    OpCase c = op_case("residual_layernorm_forward (sum, y, mean, rstd)", {rnd({R, C}), rnd({R, C}), rnd({C}, 0.5, 1.5), rnd({C})}, {});
    c.reference = [=](const Tensors& in) {
      Tensor<double> sum(Shape{R, C});
      for (std::int64_t i = 0; i < sum.numel(); ++i) sum[i] = in[0][i] + in[1][i];
      Tensors ln = layernorm_reference(sum, in[2], in[3], kLayerNormEps);
      return Tensors{sum, ln[0], ln[1], ln[2]};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), r = dev.in(in[1]), g = dev.in(in[2]), b = dev.in(in[3]);
      Array sum = dev.poisoned(Shape{R, C}), y = dev.poisoned(Shape{R, C}), mean = dev.poisoned(Shape{R}),
            rstd = dev.poisoned(Shape{R});
      B::residual_layernorm_forward(*dev.ctx, x.data(), r.data(), sum.data(), g.data(), b.data(), y.data(), mean.data(),
                                    rstd.data(), R, C, kLayerNormEps);
      return Tensors{dev.out(sum), dev.out(y), dev.out(mean), dev.out(rstd)};
    };
    table.push_back(c);
  }
  {  // Attention over the fused qkv buffer; the backward overwrites dqkv.
    const AttentionShape s{2, 5, 2, 3};
    OpCase c = op_case("attention_forward / attention_backward (2 x 5 tokens, 2 heads of 3)",
             {rnd({s.batch, s.tokens, 3 * s.dim()}, -1.5, 1.5)}, {0});
    c.reference = [=](const Tensors& in) { return Tensors{attention_reference(in[0], s, false)}; };
    c.forward = [=](const Tensors& in) {
      Array qkv = dev.in(in[0]), out = dev.poisoned(Shape{s.batch, s.tokens, s.dim()});
      B::template attention_forward<P>(*dev.ctx, qkv.data(), out.data(), s,
                                          (typename B::template AttentionSaved<P>*)nullptr);
      return Tensors{dev.out(out)};
    };
    c.backward = [=](const Tensors& in, const Tensors& d) {
      Array qkv = dev.in(in[0]), out = dev.poisoned(Shape{s.batch, s.tokens, s.dim()}), dout = dev.in(d[0]);
      Array dqkv = dev.poisoned(in[0].shape());
      typename B::template AttentionSaved<P> saved;
      B::template attention_forward<P>(*dev.ctx, qkv.data(), out.data(), s, &saved);
      B::template attention_backward<P>(*dev.ctx, dout.data(), qkv.data(), out.data(), saved, dqkv.data(), s);
      return Tensors{dev.out(dqkv)};
    };
    table.push_back(c);
  }
  {  // Optional: attention with LoMaR's relative key bias (table [hd, buckets], dtable accumulated).
    const AttentionShape s{2, 4, 2, 3};
    constexpr std::int64_t buckets = 5;
    Tensor<std::int32_t> bucket(Shape{s.tokens, s.tokens});
    for (std::int64_t i = 0; i < bucket.numel(); ++i) bucket[i] = std::int32_t((i * 7 + 3) % buckets);
    OpCase c = op_case("attention with a relative key bias (optional kernel)",
             {rnd({s.batch, s.tokens, 3 * s.dim()}, -1.5, 1.5), rnd({s.head_dim, buckets})}, {0, 1});
    c.reference = [=](const Tensors& in) { return Tensors{attention_reference(in[0], s, false, &in[1], &bucket, buckets)}; };
    using Saved = typename B::template AttentionSaved<P>;
    if constexpr (requires(typename B::Context& x, const T* p, T* q, Saved* sv, const RelativeKeyBias<T>* r) {
                    B::template attention_forward<P>(x, p, q, s, sv, r);
                  }) {
      const Tensor<double> prior = rnd({s.head_dim, buckets});
      auto run = [=](const Tensors& in, const Tensor<double>* dout, Tensors* grads) {
        Array qkv = dev.in(in[0]), tab = dev.in(in[1]), out = dev.poisoned(Shape{s.batch, s.tokens, s.dim()});
        auto ids = dev.ids(bucket);
        Array dtab = dev.in(prior);
        const RelativeKeyBias<T> rpe{tab.data(), ids.data(), buckets, dtab.data()};
        Saved saved;
        B::template attention_forward<P>(*dev.ctx, qkv.data(), out.data(), s, &saved, &rpe);
        if (!dout) return dev.out(out);
        Array d = dev.in(*dout), dqkv = dev.poisoned(in[0].shape());
        B::template attention_backward<P>(*dev.ctx, d.data(), qkv.data(), out.data(), saved, dqkv.data(), s, &rpe);
        *grads = Tensors{dev.out(dqkv), dev.added(dtab, prior)};
        return dev.out(out);
      };
      c.forward = [=](const Tensors& in) { return Tensors{run(in, nullptr, nullptr)}; };
      c.backward = [=](const Tensors& in, const Tensors& d) {
        Tensors grads;
        run(in, &d[0], &grads);
        return grads;
      };
    } else {
      c.declined = std::string(B::name) + " has no relative-bias attention kernel";
    }
    table.push_back(c);
  }
  {  // Optional: the pre-softmax logits (MAE-lite's distillation); backward accumulates into q, k.
    const AttentionShape s{2, 4, 3, 2};
    OpCase c = op_case("attention_logits_forward / attention_logits_backward (optional kernel)",
             {rnd({s.batch, s.tokens, 3 * s.dim()}, -1.5, 1.5)}, {0});
    c.reference = [=](const Tensors& in) { return Tensors{attention_reference(in[0], s, true)}; };
    if constexpr (requires(typename B::Context& x, const T* p, T* q) {
                    B::attention_logits_forward(x, p, q, s);
                    B::attention_logits_backward(x, p, p, q, s);
                  }) {
      c.forward = [=](const Tensors& in) {
        Array qkv = dev.in(in[0]), logits = dev.poisoned(Shape{s.batch, s.heads, s.tokens, s.tokens});
        B::attention_logits_forward(*dev.ctx, qkv.data(), logits.data(), s);
        return Tensors{dev.out(logits)};
      };
      const Tensor<double> prior = rnd({s.batch, s.tokens, 3 * s.dim()});
      c.backward = [=](const Tensors& in, const Tensors& d) {
        Array qkv = dev.in(in[0]), dl = dev.in(d[0]), dqkv = dev.in(prior);
        B::attention_logits_backward(*dev.ctx, dl.data(), qkv.data(), dqkv.data(), s);
        return Tensors{dev.added(dqkv, prior)};
      };
    } else {
      c.declined = std::string(B::name) + " has no attention-logits kernel";
    }
    table.push_back(c);
  }
  for (PatchLayout layout : {PatchLayout::channel_major, PatchLayout::pixel_major}) {
    const PatchGeometry g{2, 3, 6, 4, 2};
    OpCase c = op_case(std::string("patchify, ") + (layout == PatchLayout::channel_major ? "channel-major" : "pixel-major"),
             {rnd({g.batch, g.channels, g.height, g.width})}, {});
    c.reference = [=](const Tensors& in) {
      Tensor<double> p(Shape{g.batch, g.patches(), g.patch_dim()});
      for (std::int64_t b = 0; b < g.batch; ++b)
        for (std::int64_t i = 0; i < g.grid_h(); ++i)
          for (std::int64_t j = 0; j < g.grid_w(); ++j)
            for (std::int64_t ch = 0; ch < g.channels; ++ch)
              for (std::int64_t u = 0; u < g.patch; ++u)
                for (std::int64_t v = 0; v < g.patch; ++v) {
                  const std::int64_t e = layout == PatchLayout::channel_major ? (ch * g.patch + u) * g.patch + v
                                                                              : (u * g.patch + v) * g.channels + ch;
                  p[(b * g.patches() + i * g.grid_w() + j) * g.patch_dim() + e] =
                      in[0][((b * g.channels + ch) * g.height + i * g.patch + u) * g.width + j * g.patch + v];
                }
      return Tensors{p};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), p = dev.poisoned(Shape{g.batch, g.patches(), g.patch_dim()});
      B::patchify(*dev.ctx, x.data(), p.data(), g, layout);
      return Tensors{dev.out(p)};
    };
    table.push_back(c);
  }
  {  // Gather the kept tokens; the backward scatters (accumulating).
    constexpr std::int64_t Bn = 2, L = 6, K = 4, D = 3;
    const Tensor<std::int32_t> ids = permutation_ids(Bn, L, K, 7);
    OpCase c = op_case("gather_tokens_forward / gather_tokens_backward (accumulating)", {rnd({Bn, L, D})}, {0});
    c.reference = [=](const Tensors& in) {
      Tensor<double> out(Shape{Bn, K, D});
      for (std::int64_t b = 0; b < Bn; ++b)
        for (std::int64_t k = 0; k < K; ++k)
          for (std::int64_t d = 0; d < D; ++d) out[(b * K + k) * D + d] = in[0][(b * L + ids[b * K + k]) * D + d];
      return Tensors{out};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), out = dev.poisoned(Shape{Bn, K, D});
      auto i = dev.ids(ids);
      B::gather_tokens_forward(*dev.ctx, x.data(), i.data(), out.data(), Bn, L, K, D);
      return Tensors{dev.out(out)};
    };
    const Tensor<double> prior = rnd({Bn, L, D});
    c.backward = [=](const Tensors&, const Tensors& d) {
      Array dout = dev.in(d[0]), dx = dev.in(prior);
      auto i = dev.ids(ids);
      B::gather_tokens_backward(*dev.ctx, dout.data(), i.data(), dx.data(), Bn, L, K, D);
      return Tensors{dev.added(dx, prior)};
    };
    table.push_back(c);
  }
  {  // The encoder's input under masking, and the split of its gradient.
    constexpr std::int64_t Bn = 2, L = 6, K = 3, D = 4;
    const Tensor<std::int32_t> ids = permutation_ids(Bn, L, K, 8);
    OpCase c = op_case("assemble_encoder_tokens / split_encoder_token_grads", {rnd({Bn, K, D}), rnd({D}), rnd({1 + L, D})}, {0, 1});
    c.reference = [=](const Tensors& in) {
      Tensor<double> x(Shape{Bn, 1 + K, D});
      for (std::int64_t b = 0; b < Bn; ++b)
        for (std::int64_t d = 0; d < D; ++d) {
          x[(b * (1 + K)) * D + d] = in[1][d];
          for (std::int64_t k = 0; k < K; ++k)
            x[(b * (1 + K) + 1 + k) * D + d] = in[0][(b * K + k) * D + d] + in[2][(1 + ids[b * K + k]) * D + d];
        }
      return Tensors{x};
    };
    c.forward = [=](const Tensors& in) {
      Array p = dev.in(in[0]), cls = dev.in(in[1]), pos = dev.in(in[2]), x = dev.poisoned(Shape{Bn, 1 + K, D});
      auto i = dev.ids(ids);
      B::assemble_encoder_tokens(*dev.ctx, p.data(), cls.data(), pos.data(), i.data(), x.data(), Bn, K, D);
      return Tensors{dev.out(x)};
    };
    // d(cls) is the sum over samples of the per-sample rows the kernel writes.
    c.backward = [=](const Tensors&, const Tensors& d) {
      Array dx = dev.in(d[0]), dp = dev.poisoned(Shape{Bn, K, D}), dcls = dev.poisoned(Shape{Bn, D});
      B::split_encoder_token_grads(*dev.ctx, dx.data(), dp.data(), dcls.data(), Bn, K, D);
      const Tensor<double> rows = dev.out(dcls);
      Tensor<double> sum(Shape{D});
      sum.zero();
      for (std::int64_t b = 0; b < Bn; ++b)
        for (std::int64_t e = 0; e < D; ++e) sum[e] += rows[b * D + e];
      return Tensors{dev.out(dp), sum};
    };
    table.push_back(c);
  }
  {  // The decoder's full sequence: visible tokens back in patch order, the mask token elsewhere.
    constexpr std::int64_t Bn = 2, L = 5, K = 2, D = 3;
    Tensor<std::int32_t> restore(Shape{Bn, L});
    const Tensor<std::int32_t> perm = permutation_ids(Bn, L, L, 9);  // shuffled position -> patch
    for (std::int64_t b = 0; b < Bn; ++b)
      for (std::int64_t p = 0; p < L; ++p) restore[b * L + perm[b * L + p]] = std::int32_t(p);
    OpCase c = op_case("unshuffle_forward / unshuffle_backward (accumulating)", {rnd({Bn, 1 + K, D}), rnd({D})}, {0, 1});
    c.reference = [=](const Tensors& in) {
      Tensor<double> out(Shape{Bn, 1 + L, D});
      for (std::int64_t b = 0; b < Bn; ++b)
        for (std::int64_t d = 0; d < D; ++d) {
          out[b * (1 + L) * D + d] = in[0][b * (1 + K) * D + d];
          for (std::int64_t l = 0; l < L; ++l) {
            const std::int64_t at = restore[b * L + l];
            out[(b * (1 + L) + 1 + l) * D + d] = at < K ? in[0][(b * (1 + K) + 1 + at) * D + d] : in[1][d];
          }
        }
      return Tensors{out};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), m = dev.in(in[1]), out = dev.poisoned(Shape{Bn, 1 + L, D});
      auto r = dev.ids(restore);
      B::unshuffle_forward(*dev.ctx, x.data(), m.data(), r.data(), out.data(), Bn, K, L, D);
      return Tensors{dev.out(out)};
    };
    const Tensor<double> px = rnd({Bn, 1 + K, D}), pm = rnd({D});
    c.backward = [=](const Tensors&, const Tensors& d) {
      Array dout = dev.in(d[0]), dx = dev.in(px), dm = dev.in(pm);
      auto r = dev.ids(restore);
      B::unshuffle_backward(*dev.ctx, dout.data(), r.data(), dx.data(), dm.data(), Bn, K, L, D);
      return Tensors{dev.added(dx, px), dev.added(dm, pm)};
    };
    table.push_back(c);
  }
  {  // LocalMIM's maps, read behind one skipped (cls) row per sample; the backwards overwrite.
    const MapGeometry g{2, 2, 3, 1};
    constexpr std::int64_t C = 2;
    OpCase c = op_case("pixel_shuffle_2x2 (with bias) forward / backward, behind a skipped row",
             {rnd({g.rows(), 4 * C}), rnd({C})}, {0});
    auto shuffle = [=](const Tensors& in) {
      Tensor<double> y(Shape{g.batch, 2 * g.height, 2 * g.width, C});
      for (std::int64_t b = 0; b < g.batch; ++b)
        for (std::int64_t i = 0; i < g.height; ++i)
          for (std::int64_t j = 0; j < g.width; ++j)
            for (std::int64_t ch = 0; ch < C; ++ch)
              for (std::int64_t dy = 0; dy < 2; ++dy)
                for (std::int64_t dx = 0; dx < 2; ++dx)
                  y[((b * 2 * g.height + 2 * i + dy) * 2 * g.width + 2 * j + dx) * C + ch] =
                      in[0][(b * g.rows_per_sample() + g.skip + i * g.width + j) * 4 * C + 4 * ch + 2 * dy + dx] +
                      in[1][ch];
      return Tensors{y};
    };
    c.reference = shuffle;
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), b = dev.in(in[1]), y = dev.poisoned(Shape{g.batch, 2 * g.height, 2 * g.width, C});
      B::pixel_shuffle_2x2_forward(*dev.ctx, x.data(), b.data(), y.data(), g, C);
      return Tensors{dev.out(y)};
    };
    c.backward = [=](const Tensors&, const Tensors& d) {
      Array dy = dev.in(d[0]), dx = dev.poisoned(Shape{g.rows(), 4 * C});
      B::pixel_shuffle_2x2_backward(*dev.ctx, dy.data(), dx.data(), g, C);
      return Tensors{dev.out(dx)};
    };
    table.push_back(c);
  }
  {
    const MapGeometry g{2, 4, 2, 1};
    constexpr std::int64_t C = 3;
    OpCase c = op_case("avg_pool_2x2 forward / backward, behind a skipped row", {rnd({g.rows(), C})}, {0});
    c.reference = [=](const Tensors& in) {
      Tensor<double> y(Shape{g.batch, g.height / 2, g.width / 2, C});
      y.zero();
      for (std::int64_t b = 0; b < g.batch; ++b)
        for (std::int64_t i = 0; i < g.height; ++i)
          for (std::int64_t j = 0; j < g.width; ++j)
            for (std::int64_t ch = 0; ch < C; ++ch)
              y[((b * g.height / 2 + i / 2) * g.width / 2 + j / 2) * C + ch] +=
                  0.25 * in[0][(b * g.rows_per_sample() + g.skip + i * g.width + j) * C + ch];
      return Tensors{y};
    };
    c.forward = [=](const Tensors& in) {
      Array x = dev.in(in[0]), y = dev.poisoned(Shape{g.batch, g.height / 2, g.width / 2, C});
      B::avg_pool_2x2_forward(*dev.ctx, x.data(), y.data(), g, C);
      return Tensors{dev.out(y)};
    };
    c.backward = [=](const Tensors&, const Tensors& d) {
      Array dy = dev.in(d[0]), dx = dev.poisoned(Shape{g.rows(), C});
      B::avg_pool_2x2_backward(*dev.ctx, dy.data(), dx.data(), g, C);
      return Tensors{dev.out(dx)};
    };
    table.push_back(c);
  }
  {  // Masked MSE: sum_r w_r mean_p (pred - target)^2 / sum_r w_r; the backward accumulates.
    constexpr std::int64_t R = 6, V = 4;
    Tensor<double> weight(Shape{R});
    for (std::int64_t r = 0; r < R; ++r) weight[r] = double(r % 3 == 0 ? 0 : r % 2 + 1);
    OpCase c = op_case("masked_mse_forward / masked_mse_backward (weighted rows, accumulating)", {rnd({R, V}), rnd({R, V})}, {0});
    c.reference = [=](const Tensors& in) {
      double loss = 0, wsum = 0;
      for (std::int64_t r = 0; r < R; ++r) {
        double m = 0;
        for (std::int64_t p = 0; p < V; ++p) m += (in[0][r * V + p] - in[1][r * V + p]) * (in[0][r * V + p] - in[1][r * V + p]);
        loss += weight[r] * m / double(V);
        wsum += weight[r];
      }
      Tensor<double> out(Shape{1});
      out[0] = loss / wsum;
      return Tensors{out};
    };
    c.forward = [=](const Tensors& in) {
      Array pred = dev.in(in[0]), target = dev.in(in[1]), w = dev.in(weight);
      auto result = B::template zeros<double>(*dev.ctx, Shape{2});
      B::masked_mse_forward(*dev.ctx, pred.data(), target.data(), w.data(), R, V, result.data());
      Tensor<double> out(Shape{1});
      out[0] = B::read_scalar(*dev.ctx, result.data());
      return Tensors{out};
    };
    const Tensor<double> prior = rnd({R, V});
    c.backward = [=](const Tensors& in, const Tensors& d) {
      double wsum = 0;
      for (std::int64_t r = 0; r < R; ++r) wsum += weight[r];
      Array pred = dev.in(in[0]), target = dev.in(in[1]), w = dev.in(weight), dpred = dev.in(prior);
      B::masked_mse_backward(*dev.ctx, d[0][0], pred.data(), target.data(), w.data(), wsum, dpred.data(), R, V);
      return Tensors{dev.added(dpred, prior)};
    };
    table.push_back(c);
  }
  return table;
}

// ---- running the table -------------------------------------------------------------------------
// Element-wise, allclose-style: the largest |got - want| / (|want| + rms(want)) (entries near zero
// are held to the tensor's typical magnitude); infinite when a value is not finite or sizes differ.
inline double worst_error(const Tensor<double>& got, const Tensor<double>& want) {
  if (!(got.shape() == want.shape())) return INFINITY;
  double ms = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) ms += want[i] * want[i];
  const double scale = std::max(std::sqrt(ms / double(std::max<std::int64_t>(1, want.numel()))), 1e-12);
  double worst = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    worst = std::max(worst, std::abs(got[i] - want[i]) / (std::abs(want[i]) + scale));
  }
  return worst;
}

// d/dx_j of L = sum_o <dout_o, reference(x)_o> by central differences, for every differentiable input.
inline Tensors finite_difference_gradients(const OpCase& c, const Tensors& douts) {
  Tensors grads;
  for (int which : c.differentiable) {
    Tensors x = c.inputs;
    Tensor<double>& xi = x[std::size_t(which)];
    xi = xi.clone();  // inputs share storage: perturb a copy
    Tensor<double> g(xi.shape());
    for (std::int64_t j = 0; j < g.numel(); ++j) {
      const double x0 = xi[j], h = 1e-6 * std::max(1.0, std::abs(x0));
      auto loss = [&](double v) {
        xi[j] = v;
        const Tensors out = c.reference(x);
        double l = 0;
        for (std::size_t o = 0; o < douts.size(); ++o)
          for (std::int64_t k = 0; k < out[o].numel(); ++k) l += douts[o][k] * out[o][k];
        return l;
      };
      g[j] = (loss(x0 + h) - loss(x0 - h)) / (2 * h);
      xi[j] = x0;
    }
    grads.push_back(g);
  }
  return grads;
}

struct OpReport {
  std::string name, declined;
  std::vector<double> value_error;     // per output
  std::vector<double> gradient_error;  // per differentiable input (empty: value mode only)
  bool gradient_mode = false;
};

// Every case of op_table<B, P>: its errors in value mode and, where it has a backward, in gradient mode.
template <Backend B, PrecisionPolicy P>
std::vector<OpReport> run_op_table(typename B::Context& ctx) {
  std::vector<OpReport> reports;
  for (const OpCase& c : op_table<B, P>(ctx)) {
    OpReport r;
    r.name = c.name;
    r.declined = c.declined;
    if (c.declined.empty()) {
      const Tensors want = c.reference(c.inputs), got = c.forward(c.inputs);
      for (std::size_t o = 0; o < want.size(); ++o)
        r.value_error.push_back(o < got.size() ? worst_error(got[o], want[o]) : INFINITY);
      if (c.backward) {
        r.gradient_mode = true;
        Tensors douts;
        const std::size_t n = c.loss_outputs < 0 ? want.size() : std::size_t(c.loss_outputs);
        for (std::size_t o = 0; o < n; ++o) douts.push_back(random_tensor<double>(want[o].shape(), 900 + o));
        const Tensors g = c.backward(c.inputs, douts), fd = finite_difference_gradients(c, douts);
        for (std::size_t k = 0; k < fd.size(); ++k)
          r.gradient_error.push_back(k < g.size() ? worst_error(g[k], fd[k]) : INFINITY);
      }
    }
    reports.push_back(r);
  }
  return reports;
}

}  // namespace vitfreeze::testing::backend_ops
