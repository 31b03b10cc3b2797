#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer into ./build-asan and runs
# it with CTest. Any sanitizer report fails the test that triggered it (and so this script).
#   scripts/sanitize.sh            build with $VITFREEZE_JOBS jobs (default: all cores), run all tests
#   VITFREEZE_JOBS=1 scripts/sanitize.sh   on a busy machine
# Extra arguments go to ctest (e.g. -R test_io).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs="${VITFREEZE_JOBS:-$(nproc)}"
start=$SECONDS

# -Og: about 1.5x faster to compile than -O1 with ASan (the build dominates this script), Eigen-heavy
# tests still run fast enough, stack traces stay exact; asserts stay on (no NDEBUG).
# -Wno-uninitialized: g++ 12 with sanitizers flags the `__m512 __Y = __Y;` idiom inside its own
# avx512fintrin.h (GCC bug 105593) dozens of times; the ordinary build still reports real cases.
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wno-uninitialized"
cmake -S . -B build-asan \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1" \
  -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DVITFREEZE_CUDA=OFF -DVITFREEZE_DNNL=OFF -DVITFREEZE_BUILD_BENCH=OFF -DVITFREEZE_BUILD_EXAMPLES=OFF -DVITFREEZE_BUILD_TESTS=ON \
  >/dev/null
cmake --build build-asan -j"$jobs"
built=$SECONDS

# -DVITFREEZE_DNNL=OFF: this suite runs the CPU backend's Eigen GEMM (the build without oneDNN) while
# scripts/test.sh runs the default oneDNN one, so CI tests both.
# Leak checking works with libgomp: its thread pool stays reachable, so LeakSanitizer does not
# report it. halt_on_error makes the first UB report fail the test instead of scrolling past.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_init_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd build-asan
# The compile-fail probes and the install/consumer check build with the plain compiler: they test the
# build system, not run-time behaviour, and scripts/test.sh already runs them.
status=0
ctest --output-on-failure -j"$(nproc)" --timeout 900 -E '^(compile_fail|compile_control|consumer):' "$@" || status=$?
echo "sanitize: build $((built - start)) s, tests $((SECONDS - built)) s"
exit $status
