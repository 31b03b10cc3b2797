# CUDA executables of this project (tests, benchmarks, examples): nvcc translation units that include
# the public headers, linked against the CUDA runtime and cuBLASLt, and against cuDNN when it is
# found (then VITFREEZE_WITH_CUDNN turns on the fused attention path). The PyTorch wheel ships
# libcudnn.so.9 without the unversioned link, hence both names; point CUDNN_PATH (CMake or
# environment variable) at a non-system install.
find_library(VITFREEZE_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
             HINTS ${CUDNN_PATH} $ENV{CUDNN_PATH} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
find_path(VITFREEZE_CUDNN_INCLUDE_DIR cudnn.h
          HINTS ${CUDNN_PATH} $ENV{CUDNN_PATH} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
if(VITFREEZE_CUDNN_LIBRARY AND VITFREEZE_CUDNN_INCLUDE_DIR)
  set(VITFREEZE_HAVE_CUDNN ON)
  message(STATUS "vitfreeze: cuDNN ${VITFREEZE_CUDNN_LIBRARY} (headers ${VITFREEZE_CUDNN_INCLUDE_DIR})")
else()
  set(VITFREEZE_HAVE_CUDNN OFF)
  message(STATUS "vitfreeze: cuDNN not found: GEMM attention only, test_cuda_sdpa not built (set CUDNN_PATH)")
endif()

function(vitfreeze_cuda_executable name source)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE vitfreeze::vitfreeze CUDA::cudart CUDA::cublasLt)
  # Eigen is host-only here; its CUDA annotations only produce warnings under nvcc.
  target_compile_definitions(${name} PRIVATE EIGEN_NO_CUDA)
  if(VITFREEZE_HAVE_CUDNN)
    target_include_directories(${name} PRIVATE ${VITFREEZE_CUDNN_INCLUDE_DIR})
    target_link_libraries(${name} PRIVATE ${VITFREEZE_CUDNN_LIBRARY})
    target_compile_definitions(${name} PRIVATE VITFREEZE_WITH_CUDNN)
  endif()
endfunction()
