#pragma once
// CudaContext: everything one device stream of work needs, owned in one place (no globals): the
// device id, a non-blocking stream, the cuBLASLt handle and its workspace, the caching allocator and
// the cache of matmul plans. Kernels and GEMMs take the context and enqueue on its stream.
//
// Threading: a context is used by one host thread at a time. The CUDA runtime's current device is
// per thread; the constructor makes `device` current, and make_current() restores it after other
// code switched devices.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <type_traits>
#include <typeindex>
#include <typeinfo>

#include "vitfreeze/backend/cuda/allocator.hpp"
#include "vitfreeze/backend/cuda/check.hpp"
#include "vitfreeze/backend/cuda/matmul_plan.hpp"

namespace vitfreeze::cuda {

namespace detail {
struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept { (void)cudaStreamDestroy(s); }
};
struct LtHandleDeleter {
  void operator()(cublasLtHandle_t h) const noexcept { (void)cublasLtDestroy(h); }
};
}  // namespace detail

class CudaContext {
 public:
  // 32 MiB: what cuBLASLt's Hopper kernels ask for at most (NVIDIA's recommendation for sm_90).
  static constexpr std::size_t kWorkspaceBytes = std::size_t(32) << 20;

  explicit CudaContext(int device = 0) : device_(device), allocator_(device) {
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaGetDeviceProperties(&properties_, device), "cudaGetDeviceProperties");
    cudaStream_t s = nullptr;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    stream_.reset(s);
    cublasLtHandle_t h = nullptr;
    check(cublasLtCreate(&h), "cublasLtCreate");
    lt_.reset(h);
    workspace_ = allocator_.allocate(kWorkspaceBytes);
  }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;
  ~CudaContext() {
    // Queued work may still use cached blocks and the workspace; let it finish before they are freed.
    if (stream_) (void)cudaStreamSynchronize(stream_.get());
    plans_.clear();  // descriptors before the handle
  }

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_.get(); }
  cublasLtHandle_t lt() const { return lt_.get(); }
  const cudaDeviceProp& properties() const { return properties_; }
  DeviceAllocator& allocator() { return allocator_; }
  MatmulPlanCache& matmul_plans() { return plans_; }
  void* workspace() const { return workspace_.data(); }
  std::size_t workspace_bytes() const { return workspace_.bytes(); }

  void make_current() const { check(cudaSetDevice(device_), "cudaSetDevice"); }
  void synchronize() const { check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize"); }

  // The context's one instance of an optional per-stream service (e.g. the cuDNN attention plans),
  // made on first use as S(*this) and destroyed with the context, before its memory. Keeps optional
  // dependencies out of this header and avoids globals.
  template <class S>
  S& service() {
    auto it = services_.find(std::type_index(typeid(S)));
    if (it == services_.end()) it = services_.emplace(std::type_index(typeid(S)), std::make_shared<S>(*this)).first;
    return *static_cast<S*>(it->second.get());
  }

  // Uninitialised device tensor from the cache.
  template <class T>
  DeviceTensor<T> empty(const Shape& shape) {
    return allocator_.tensor<T>(shape);
  }

 private:
  int device_;
  cudaDeviceProp properties_{};
  // Declaration order is destruction order in reverse: plans, workspace, handle, stream, allocator.
  DeviceAllocator allocator_;
  std::unique_ptr<std::remove_pointer_t<cudaStream_t>, detail::StreamDeleter> stream_;
  std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, detail::LtHandleDeleter> lt_;
  DeviceBuffer workspace_;
  MatmulPlanCache plans_;
  std::map<std::type_index, std::shared_ptr<void>> services_;
};

}  // namespace vitfreeze::cuda
