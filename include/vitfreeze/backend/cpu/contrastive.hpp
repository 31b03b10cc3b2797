#pragma once
// Symmetric InfoNCE between paired views with the t-vMF similarity kernel (MiCL, peers spec §4.3),
// forward and backward. Rows 2i and 2i+1 of z [2N, D] are the two views of image i:
//   m_i = z_2i / |z_2i|,  n_j = z_2j+1 / |z_2j+1|,  s_ij = m_i . n_j,
//   phi(s) = (1 + s) / (2 (1 + kappa (1 - s))),  S_ij = phi(s_ij) / tau,
//   loss = 1/(2N) sum_i [logsumexp_j S_ij - S_ii] + 1/(2N) sum_j [logsumexp_i S_ij - S_jj].
// Computed in double (N x N logits, small next to the encoder); normalisation has no epsilon, as in
// the reference, so a zero row gives NaN and the trainer's non-finite policy takes over.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

using MatrixXdRow = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline double tvmf_phi(double s, double kappa) { return 0.5 * (1 + s) / (1 + kappa * (1 - s)); }
inline double tvmf_phi_derivative(double s, double kappa) {
  const double d = 1 + kappa * (1 - s);
  return 0.5 * (1 + 2 * kappa) / (d * d);
}

// What the backward needs from the forward.
struct TvmfInfoNceSaved {
  MatrixXdRow m, n;        // [N, D] normalised views
  Eigen::VectorXd m_norm, n_norm;
  MatrixXdRow similarity;  // s_ij
  MatrixXdRow row_softmax, column_softmax;
};

template <CpuScalar T>
inline double tvmf_info_nce_forward(const T* z, std::int64_t N, std::int64_t D, double kappa, double tau,
                                    TvmfInfoNceSaved& saved) {
  using Rows = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                          Eigen::OuterStride<>>;
  const Rows first(z, N, D, Eigen::OuterStride<>(2 * D)), second(z + D, N, D, Eigen::OuterStride<>(2 * D));
  saved.m = first.template cast<double>();
  saved.n = second.template cast<double>();
  saved.m_norm = saved.m.rowwise().norm();
  saved.n_norm = saved.n.rowwise().norm();
  saved.m.array().colwise() /= saved.m_norm.array();
  saved.n.array().colwise() /= saved.n_norm.array();
  saved.similarity = saved.m * saved.n.transpose();
  const MatrixXdRow logits = saved.similarity.unaryExpr([&](double s) { return tvmf_phi(s, kappa) / tau; });
  // Both softmaxes shifted by the same maximum: logits lie in [0, 1/tau], so nothing overflows.
  const double shift = logits.maxCoeff();
  const MatrixXdRow e = (logits.array() - shift).exp().matrix();
  const Eigen::VectorXd row_sums = e.rowwise().sum();
  const Eigen::RowVectorXd column_sums = e.colwise().sum();
  saved.row_softmax = e.array().colwise() / row_sums.array();
  saved.column_softmax = e.array().rowwise() / column_sums.array();
  double loss = 0;
  for (std::int64_t i = 0; i < N; ++i)
    loss += std::log(row_sums[i]) + std::log(column_sums[i]) + 2 * shift - 2 * logits(i, i);
  return loss / double(2 * N);
}

// dz += g * dloss/dz
template <CpuScalar T>
inline void tvmf_info_nce_backward(double g, const TvmfInfoNceSaved& saved, double kappa, double tau, T* dz,
                                   std::int64_t N, std::int64_t D) {
  // dloss/dS = (P_row + P_column - 2 I) / (2N); dS/ds = phi'(s) / tau.
  MatrixXdRow G = saved.row_softmax + saved.column_softmax;
  G.diagonal().array() -= 2.0;
  G *= g / double(2 * N);
  G.array() *= saved.similarity.unaryExpr([&](double s) { return tvmf_phi_derivative(s, kappa) / tau; }).array();
  const MatrixXdRow dm = G * saved.n, dn = G.transpose() * saved.m;
  // Through the normalisation x/|x|: (d - x_hat (x_hat . d)) / |x|.
  auto through_norm = [&](const MatrixXdRow& d, const MatrixXdRow& hat, const Eigen::VectorXd& norm, std::int64_t row_offset) {
    for (std::int64_t i = 0; i < N; ++i) {
      const double along = hat.row(i).dot(d.row(i));
      T* out = dz + (2 * i + row_offset) * D;
      for (std::int64_t k = 0; k < D; ++k) out[k] += T((d(i, k) - hat(i, k) * along) / norm[i]);
    }
  };
  through_norm(dm, saved.m, saved.m_norm, 0);
  through_norm(dn, saved.n, saved.n_norm, 1);
}

}  // namespace vitfreeze::cpu
