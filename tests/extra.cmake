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
  file(GLOB VITFREEZE_CUDA_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/*.cu)
  foreach(src IN LISTS VITFREEZE_CUDA_TEST_SOURCES)
    get_filename_component(name ${src} NAME_WE)
    if(name STREQUAL "test_cuda_sdpa" AND NOT VITFREEZE_HAVE_CUDNN)
      continue()  # it tests cuDNN itself
    endif()
    vitfreeze_cuda_executable(${name} ${src})
    add_test(NAME cuda:${name} COMMAND ${name})
    set_tests_properties(cuda:${name} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
endif()
