// The backend op table (backend_ops.hpp) on the CPU backend, in double (Fp64) and float (Fp32):
// value mode against plain double loops, gradient mode against finite differences of them.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "backend_ops.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"

using namespace vitfreeze;
using namespace vitfreeze::testing::backend_ops;

namespace {

template <PrecisionPolicy P>
void check_table(double value_tol, double gradient_tol) {
  cpu::CpuContext ctx;
  int values = 0, gradients = 0;
  for (const OpReport& r : run_op_table<Cpu, P>(ctx)) {
    INFO(r.name);
    CHECK_MESSAGE(r.declined.empty(), "the CPU backend declines " << r.name << ": " << r.declined);
    for (std::size_t o = 0; o < r.value_error.size(); ++o) {
      INFO("output " << o);
      CHECK(r.value_error[o] <= value_tol);
    }
    for (std::size_t k = 0; k < r.gradient_error.size(); ++k) {
      INFO("gradient of differentiable input " << k);
      CHECK(r.gradient_error[k] <= gradient_tol);
    }
    values += !r.value_error.empty();
    gradients += r.gradient_mode;
  }
  MESSAGE(values << " ops in value mode, " << gradients << " in gradient mode");
  CHECK(values == 18);  // every case of the table ran
  CHECK(gradients == 13);
}

}  // namespace

TEST_CASE("backend ops on the CPU in double: values from plain loops, gradients by finite differences") {
  check_table<Fp64>(1e-12, 1e-6);
}

TEST_CASE("backend ops on the CPU in float: values from plain loops, gradients by finite differences") {
  check_table<Fp32>(2e-6, 2e-4);
}

TEST_CASE("the op table's measure can fail: a wrong value, a forgotten (poisoned) element, an overwrite") {
  const Tensor<double> want = testing::random_tensor<double>({4, 3}, 1);
  Tensor<double> wrong = want.clone();
  wrong[5] += 1e-3;
  CHECK(worst_error(wrong, want) > 1e-6);
  Tensor<double> forgotten = want.clone();
  forgotten[0] = std::nan("");
  CHECK(worst_error(forgotten, want) == INFINITY);
  Tensor<double> overwritten = want.clone();  // what an accumulating kernel that overwrote would report
  for (std::int64_t i = 0; i < overwritten.numel(); ++i) overwritten[i] = 2 * want[i];
  CHECK(worst_error(overwritten, want) > 0.1);
}
