#pragma once
// The CUDA backend's parameter handle (Cuda::Parameter<P>, what the models in model/ read and
// accumulate into): a trainable tensor on the device, made from the host Parameter it mirrors (same
// name, same initial values, so a model initialised on the CPU trains on the GPU unchanged):
//   master   fp32 values, what AdamW updates and checkpoints read;
//   working  the policy's activation-type copy the GEMMs and kernels read (the master itself for fp32);
//   grad, m, v  fp32, present only while the parameter trains: freezing releases all three.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/elementwise.cuh"
#include "vitfreeze/core/parameter.hpp"
#include "vitfreeze/core/precision.hpp"

namespace vitfreeze::cuda {

template <PrecisionPolicy P>
  requires std::is_same_v<typename P::Master, float> && DeviceScalar<typename P::Activation>
class CudaParameter {
 public:
  using T = typename P::Activation;

  CudaParameter() = default;
  CudaParameter(CudaContext& ctx, const Parameter<float>& host)
      : decay(host.decay), name_(host.name), numel_(host.value.numel()), shape_(host.value.shape()) {
    master_ = ctx.allocator().allocate(sizeof(float) * std::size_t(numel_));
    check(cudaMemcpyAsync(master_.data(), host.value.data(), master_.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
          "cudaMemcpyAsync(parameter upload)");
    if constexpr (!std::is_same_v<T, float>) {
      working_ = ctx.allocator().allocate(sizeof(T) * std::size_t(numel_));
      convert<T>(ctx, master_.as<float>(), working_.as<T>(), numel_);
    }
    if (host.trainable) unfreeze(ctx);
  }

  bool decay = true;
  std::int64_t step = 0;  // AdamW updates so far

  const std::string& name() const { return name_; }
  std::int64_t numel() const { return numel_; }
  const Shape& shape() const { return shape_; }
  bool trainable() const { return !grad_.empty(); }

  const T* value() const {
    if constexpr (std::is_same_v<T, float>)
      return master_.as<float>();
    else
      return working_.as<T>();
  }
  float* master() const { return master_.as<float>(); }
  T* working_copy() const {  // null for fp32 (the master is read directly)
    if constexpr (std::is_same_v<T, float>)
      return nullptr;
    else
      return working_.as<T>();
  }
  // Null when frozen: the backward then does no work for this tensor.
  float* grad() const { return grad_.as<float>(); }
  float* m() const { return m_.as<float>(); }
  float* v() const { return v_.as<float>(); }

  void zero_grad(CudaContext& ctx) const {
    if (trainable()) check(cudaMemsetAsync(grad_.data(), 0, grad_.bytes(), ctx.stream()), "cudaMemsetAsync(grad)");
  }
  // Frozen: gradient and optimizer state go back to the allocator; nothing reaches this tensor again.
  void freeze() {
    grad_ = m_ = v_ = DeviceBuffer();
  }
  void unfreeze(CudaContext& ctx) {
    if (trainable()) return;
    const std::size_t bytes = sizeof(float) * std::size_t(numel_);
    grad_ = ctx.allocator().allocate(bytes);
    m_ = ctx.allocator().allocate(bytes);
    v_ = ctx.allocator().allocate(bytes);
    for (const DeviceBuffer* b : {&grad_, &m_, &v_})
      check(cudaMemsetAsync(b->data(), 0, bytes, ctx.stream()), "cudaMemsetAsync(parameter state)");
  }

  // Host copies (wait for the stream).
  void values_to_host(CudaContext& ctx, Parameter<float>& host) const { copy_out(ctx, master_, host.value); }
  // The AdamW moments into m and v (host tensors of this shape); the step count is `step`.
  void moments_to_host(CudaContext& ctx, Tensor<float>& m, Tensor<float>& v) const {
    if (!trainable()) throw ConfigError("CudaParameter " + name_ + ": frozen, no optimizer state");
    copy_out(ctx, m_, m);
    copy_out(ctx, v_, v);
  }
  // Takes values, trainability and AdamW state (m, v, step; null: none yet) from the host, as a
  // checkpoint restored them there: the working copy is rewritten, a frozen tensor releases its
  // state, a trained one without state starts from zero moments.
  void assign_from_host(CudaContext& ctx, const Parameter<float>& host, const Tensor<float>* m, const Tensor<float>* v,
                        std::int64_t adam_step) {
    expect_shape(host.value.shape(), shape_, ("CudaParameter " + name_).c_str());
    check(cudaMemcpyAsync(master_.data(), host.value.data(), master_.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
          "cudaMemcpyAsync(parameter restore)");
    if constexpr (!std::is_same_v<T, float>) convert<T>(ctx, master_.as<float>(), working_.as<T>(), numel_);
    if (!host.trainable) {
      freeze();
      step = 0;
      return;
    }
    unfreeze(ctx);  // zeroed gradient and moments (kept, then zeroed, when already trained)
    for (const DeviceBuffer* b : {&grad_, &m_, &v_})
      check(cudaMemsetAsync(b->data(), 0, b->bytes(), ctx.stream()), "cudaMemsetAsync(parameter state)");
    step = 0;
    if (m && v) {
      expect_shape(m->shape(), shape_, ("AdamW m of " + name_).c_str());
      expect_shape(v->shape(), shape_, ("AdamW v of " + name_).c_str());
      check(cudaMemcpyAsync(m_.data(), m->data(), m_.bytes(), cudaMemcpyHostToDevice, ctx.stream()), "cudaMemcpyAsync(m restore)");
      check(cudaMemcpyAsync(v_.data(), v->data(), v_.bytes(), cudaMemcpyHostToDevice, ctx.stream()), "cudaMemcpyAsync(v restore)");
      step = adam_step;
    }
    ctx.synchronize();  // the host tensors may go once this returns
  }
  Tensor<float> grad_to_host(CudaContext& ctx) const {
    Tensor<float> out(shape_);
    if (!trainable()) throw ConfigError("CudaParameter " + name_ + ": frozen, no gradient");
    copy_out(ctx, grad_, out);
    return out;
  }

 private:
  void copy_out(CudaContext& ctx, const DeviceBuffer& from, const Tensor<float>& to) const {
    expect_shape(to.shape(), shape_, ("CudaParameter " + name_).c_str());
    check(cudaMemcpyAsync(to.data(), from.data(), to.bytes(), cudaMemcpyDeviceToHost, ctx.stream()),
          "cudaMemcpyAsync(parameter download)");
    ctx.synchronize();
  }

  std::string name_;
  std::int64_t numel_ = 0;
  Shape shape_;
  DeviceBuffer master_, working_, grad_, m_, v_;
};

}  // namespace vitfreeze::cuda
