# ---- compile-fail tests: each source must NOT compile, and must compile with VITFREEZE_CONTROL --
file(GLOB VITFREEZE_COMPILE_FAIL_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/*.cpp)
set(_vf_syntax_only ${CMAKE_CXX_COMPILER} -std=c++20 -fsyntax-only -fopenmp
    -I${PROJECT_SOURCE_DIR}/include -I${EIGEN3_INCLUDE_DIR})
foreach(src IN LISTS VITFREEZE_COMPILE_FAIL_SOURCES)
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME compile_fail:${name} COMMAND ${_vf_syntax_only} ${src})
  set_tests_properties(compile_fail:${name} PROPERTIES WILL_FAIL TRUE)
  add_test(NAME compile_control:${name} COMMAND ${_vf_syntax_only} -DVITFREEZE_CONTROL ${src})
endforeach()

# ---- a tiny consumer project, built against the installed package and through add_subdirectory --
add_test(NAME consumer:find_package_and_add_subdirectory
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.sh ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/consumer_work)
set_tests_properties(consumer:find_package_and_add_subdirectory PROPERTIES TIMEOUT 600)

# ---- CUDA: a .cu translation unit including the public headers must compile (nvcc in CI) ----------
if(VITFREEZE_HAVE_CUDA)
  # cuDNN (only for the tests that include cudnn_sdpa.hpp). The PyTorch wheel ships libcudnn.so.9 without
  # the unversioned link, hence both names; point CUDNN_PATH (or -DCUDNN_PATH=) at a non-system install.
  set(VITFREEZE_CUDNN_TESTS test_cuda_sdpa)
  find_library(VITFREEZE_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
               HINTS ${CUDNN_PATH} $ENV{CUDNN_PATH} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
  find_path(VITFREEZE_CUDNN_INCLUDE_DIR cudnn.h
            HINTS ${CUDNN_PATH} $ENV{CUDNN_PATH} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  if(VITFREEZE_CUDNN_LIBRARY AND VITFREEZE_CUDNN_INCLUDE_DIR)
    message(STATUS "vitfreeze: cuDNN ${VITFREEZE_CUDNN_LIBRARY} (headers ${VITFREEZE_CUDNN_INCLUDE_DIR})")
  else()
    message(STATUS "vitfreeze: cuDNN not found; not building ${VITFREEZE_CUDNN_TESTS} (set CUDNN_PATH)")
  endif()
  file(GLOB VITFREEZE_CUDA_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/*.cu)
  foreach(src IN LISTS VITFREEZE_CUDA_TEST_SOURCES)
    get_filename_component(name ${src} NAME_WE)
    set(_vf_needs_cudnn OFF)
    if(name IN_LIST VITFREEZE_CUDNN_TESTS)
      set(_vf_needs_cudnn ON)
      if(NOT (VITFREEZE_CUDNN_LIBRARY AND VITFREEZE_CUDNN_INCLUDE_DIR))
        continue()
      endif()
    endif()
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE vitfreeze::vitfreeze CUDA::cudart CUDA::cublasLt)
    if(_vf_needs_cudnn)
      target_include_directories(${name} PRIVATE ${VITFREEZE_CUDNN_INCLUDE_DIR})
      target_link_libraries(${name} PRIVATE ${VITFREEZE_CUDNN_LIBRARY})
    endif()
    # Eigen is host-only here; its CUDA annotations only produce warnings under nvcc.
    target_compile_definitions(${name} PRIVATE EIGEN_NO_CUDA)
    add_test(NAME cuda:${name} COMMAND ${name})
    set_tests_properties(cuda:${name} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
endif()
