# Sourced by the CPU side-by-side benchmarks: what this machine is, and the environment that gives
# Debian's PyTorch its best configuration here.
#   torch_env WAIT   sets the array TORCH_ENV: OMP_WAIT_POLICY=WAIT (PASSIVE is PyTorch's best on 2
#                    cores; the benches also run ACTIVE), no glibc malloc trimming, and OpenBLAS's
#                    AVX-512 kernels only when the CPU has AVX-512 (on an AVX2-only CPU forcing them
#                    dies with "Illegal instruction"; OpenBLAS's own detection is kept there).
#   ISA, HAS_BF16    avx512 | avx2, and yes when the CPU has AVX512-BF16 or AMX-BF16.
CPU_FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
ISA=avx2
[[ "$CPU_FLAGS" == *" avx512f "* ]] && ISA=avx512
HAS_BF16=no
[[ "$CPU_FLAGS" == *" avx512_bf16 "* || "$CPU_FLAGS" == *" amx_bf16 "* ]] && HAS_BF16=yes
torch_env() {
  TORCH_ENV=("OMP_WAIT_POLICY=$1" "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296")
  [ "$ISA" = avx512 ] && TORCH_ENV+=(OPENBLAS_CORETYPE=SkylakeX)
  return 0
}
machine_line() {
  echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ISA $ISA, bf16 $HAS_BF16"
}
