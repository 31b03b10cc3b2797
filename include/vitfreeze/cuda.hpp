#pragma once
// Umbrella header of the CUDA backend, for .cu translation units compiled by nvcc (C++20). Link
// CUDA::cudart and CUDA::cublasLt. See docs/cuda.md for what is there and what was verified.
// The backend itself is `vitfreeze::Cuda` (backend/cuda/backend.cuh), the models run on it are
// model::*<Cuda, P>, and train/cuda_step_engine.cuh is the trainer's engine on it.
#include "vitfreeze/backend/cuda/adamw.cuh"
#include "vitfreeze/backend/cuda/allocator.hpp"
#include "vitfreeze/backend/cuda/attention.cuh"
#include "vitfreeze/backend/cuda/attention_gemm.cuh"
#include "vitfreeze/backend/cuda/attention_paths.cuh"
#include "vitfreeze/backend/cuda/backend.cuh"
#include "vitfreeze/backend/cuda/check.hpp"
#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/gelu.cuh"
#include "vitfreeze/backend/cuda/gemm.hpp"
#include "vitfreeze/backend/cuda/hog.cuh"
#include "vitfreeze/backend/cuda/layernorm.cuh"
#include "vitfreeze/backend/cuda/loss.cuh"
#include "vitfreeze/backend/cuda/loss_scaling.cuh"
#include "vitfreeze/backend/cuda/parameter.cuh"
#include "vitfreeze/backend/cuda/parameter_adamw.cuh"
#include "vitfreeze/backend/cuda/patchify.cuh"
#include "vitfreeze/backend/cuda/reduce.cuh"
#include "vitfreeze/backend/cuda/spatial.cuh"
#include "vitfreeze/backend/cuda/step_graph.hpp"
#include "vitfreeze/backend/cuda/tokens.cuh"
#include "vitfreeze/backend/cuda/transfer.hpp"
