# A group of tests this configuration does not build still appears in CTest's output and summary
# ("The following tests did not run: ... (Skipped)") with the reason, instead of silently missing.
function(vitfreeze_absent_tests name reason)
  add_test(NAME ${name} COMMAND bash -c "echo 'NOT BUILT: ${reason}'; exit 77")
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77)
endfunction()

# ---- compile-fail tests: each source must NOT compile, and must compile with VITFREEZE_CONTROL --
# Each source names the static_assert message it must trigger in a line "// Expected error: MESSAGE"
# (a regular expression): any other compile error (a typo, a missing include) fails the test.
file(GLOB VITFREEZE_COMPILE_FAIL_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/*.cpp)
set(_vf_syntax_only ${CMAKE_CXX_COMPILER} -std=c++20 -fsyntax-only -fopenmp
    -I${PROJECT_SOURCE_DIR}/include -I${EIGEN3_INCLUDE_DIR})
foreach(src IN LISTS VITFREEZE_COMPILE_FAIL_SOURCES)
  get_filename_component(name ${src} NAME_WE)
  file(STRINGS ${src} expected REGEX "^// Expected error: ")
  list(LENGTH expected count)
  if(NOT count EQUAL 1)
    message(FATAL_ERROR "${src}: needs exactly one line '// Expected error: MESSAGE' (has ${count})")
  endif()
  string(REGEX REPLACE "^// Expected error: " "" expected "${expected}")
  add_test(NAME compile_fail:${name} COMMAND ${_vf_syntax_only} ${src})
  # The expression alone decides (exit status ignored): it can only match a failed static_assert.
  set_tests_properties(compile_fail:${name} PROPERTIES PASS_REGULAR_EXPRESSION "error: static assertion failed.*${expected}")
  add_test(NAME compile_control:${name} COMMAND ${_vf_syntax_only} -DVITFREEZE_CONTROL ${src})
endforeach()

# ---- repository checks (plain python3): the include graph against docs/design.md's layering table,
# code quoted in the docs equal to the compiled files; each shown able to fail on a planted violation --
find_package(Python3 COMPONENTS Interpreter REQUIRED)
add_test(NAME checks:layering COMMAND Python3::Interpreter ${PROJECT_SOURCE_DIR}/scripts/check_layering.py --root ${PROJECT_SOURCE_DIR})
add_test(NAME checks:doc_quotes COMMAND Python3::Interpreter ${PROJECT_SOURCE_DIR}/scripts/check_doc_quotes.py --root ${PROJECT_SOURCE_DIR})
foreach(kind upward_include stale_exception drifted_quote)
  add_test(NAME checks:fail_on_${kind} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/planted/check_fails.sh ${PROJECT_SOURCE_DIR}
                                                  ${CMAKE_CURRENT_BINARY_DIR}/planted_${kind} ${kind})
endforeach()

# ---- docs/guide.md's custom trainer: compiled, and run for two steps per epoch ----------------------
add_executable(guide_example ${CMAKE_CURRENT_SOURCE_DIR}/guide_example.cpp)
target_link_libraries(guide_example PRIVATE vitfreeze::vitfreeze vitfreeze_dev_flags)
add_test(NAME guide:example_trains COMMAND guide_example 2 WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(guide:example_trains PROPERTIES PASS_REGULAR_EXPRESSION "epoch 19: loss [0-9.]+, training from unit 6")

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
      vitfreeze_absent_tests(cuda:test_cuda_sdpa "cuDNN not found at configure time (set CUDNN_PATH)")
      continue()  # it tests cuDNN itself
    endif()
    vitfreeze_cuda_executable(${name} ${src})
    add_test(NAME cuda:${name} COMMAND ${name})
    set_tests_properties(cuda:${name} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
elseif(VITFREEZE_CUDA)
  vitfreeze_absent_tests(cuda:not_built "no nvcc found at configure time: the CUDA tests are not compiled")
else()
  vitfreeze_absent_tests(cuda:not_built "configured with VITFREEZE_CUDA=OFF: the CUDA tests are not compiled")
endif()

# ---- MPI: data-parallel training under mpiexec with 2 and 3 ranks (one thread each) ---------------
# Open MPI refuses root unless told; ranks may outnumber the cores (CI has two). LeakSanitizer is off
# for these runs only: Open MPI keeps allocations until exit by design.
if(VITFREEZE_HAVE_MPI)
  add_executable(test_data_parallel ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_data_parallel.cpp)
  target_link_libraries(test_data_parallel PRIVATE vitfreeze::vitfreeze doctest::doctest MPI::MPI_CXX vitfreeze_dev_flags)
  foreach(ranks 2 3)
    add_test(NAME mpi:data_parallel_${ranks}_ranks
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} --oversubscribe --bind-to none ${MPIEXEC_PREFLAGS}
                     $<TARGET_FILE:test_data_parallel> ${MPIEXEC_POSTFLAGS})
    set_tests_properties(mpi:data_parallel_${ranks}_ranks PROPERTIES TIMEOUT 600 PROCESSORS ${ranks}
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1;ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
  endforeach()
elseif(VITFREEZE_MPI)
  vitfreeze_absent_tests(mpi:not_built "MPI not found at configure time (scripts/deps.sh installs Open MPI; reconfigure a fresh build dir)")
else()
  vitfreeze_absent_tests(mpi:not_built "configured with VITFREEZE_MPI=OFF: the data-parallel tests are not built")
endif()

# ---- the example executables: every flag, output path and the output directory checked before the
# first step; schedules bounded; resume across the whole history and refused on other data --------
if(TARGET vitfreeze_pretrain AND TARGET vitfreeze_schedule)
  set(_vf_expect bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/expect.sh)
  set(_vf_cli_work ${CMAKE_CURRENT_BINARY_DIR}/cli_work)
  # cli:NAME passes when vitfreeze_pretrain ARGS... exits with 2 and prints PATTERN without starting
  # to train (no "epoch " progress line).
  function(vitfreeze_pretrain_refuses name pattern)
    add_test(NAME cli:pretrain_${name}
             COMMAND ${_vf_expect} 2 ${pattern} --not "^epoch |linear probe" --
                     $<TARGET_FILE:vitfreeze_pretrain> --out ${_vf_cli_work}/${name} ${ARGN})
  endfunction()
  vitfreeze_pretrain_refuses(epochs_nan "--epochs: expected an integer in \\[0, 100000\\], got \"nan\"" --epochs nan)
  vitfreeze_pretrain_refuses(epochs_fraction "--epochs: expected an integer" --epochs 2.7)
  vitfreeze_pretrain_refuses(checkpoint_every_fraction "--checkpoint-every-epochs: expected an integer"
                             --checkpoint-every-epochs 0.5)
  vitfreeze_pretrain_refuses(seed_above_int64 "--seed: expected an integer in \\[0, 9223372036854775807\\]"
                             --seed 18446744073709551615)
  vitfreeze_pretrain_refuses(threads_beyond_cores "--threads: expected an integer in \\[1, " --threads 100000)
  vitfreeze_pretrain_refuses(semantics_unknown "--semantics: expected one of truncate\\|vitfreeze" --semantics foo)
  vitfreeze_pretrain_refuses(finetune_lr_nan "--finetune-lr: expected a number" --finetune-lr nan)
  vitfreeze_pretrain_refuses(finetune_subset_no_batch "--finetune-subset 1 holds no batch"
                             --finetune-epochs 1 --finetune-subset 1)
  vitfreeze_pretrain_refuses(train_subset_negative "--train-subset: expected an integer" --train-subset -1)
  vitfreeze_pretrain_refuses(steps_per_epoch_zero "--steps-per-epoch: expected an integer in \\[1," --steps-per-epoch 0)
  vitfreeze_pretrain_refuses(export_to_device "not a regular file \\(a device\\)" --export-encoder /dev/null)
  vitfreeze_pretrain_refuses(export_to_missing_dir "does not exist" --export-encoder ${_vf_cli_work}/absent/enc.safetensors)
  vitfreeze_pretrain_refuses(unknown_flag "not expected: .*--no-such-flag" --no-such-flag 1)
  # A second run on a locked --out stops at once (the lock here is util-linux flock's).
  add_test(NAME cli:pretrain_out_locked
           COMMAND ${_vf_expect} 2 "is in use by another run" -- bash -c
                   "mkdir -p ${_vf_cli_work}/locked && flock ${_vf_cli_work}/locked/.vitfreeze.lock $<TARGET_FILE:vitfreeze_pretrain> --out ${_vf_cli_work}/locked --epochs 0")

  function(vitfreeze_schedule_expects name code pattern)
    add_test(NAME cli:schedule_${name} COMMAND ${_vf_expect} ${code} ${pattern} --not "inf|nan" --
                                               $<TARGET_FILE:vitfreeze_schedule> ${ARGN})
  endfunction()
  vitfreeze_schedule_expects(t0_tiny 2 "--t0: expected a number in \\[0.01, 1\\]" --t0 1e-300 --format json)
  vitfreeze_schedule_expects(units_huge 2 "--units: expected an integer in \\[1, 1000\\]" --units 2000000000)
  vitfreeze_schedule_expects(image_huge 2 "--image: expected an integer" --image 1073741824 --patch 1)
  vitfreeze_schedule_expects(too_many_tokens 2 "16777216 tokens, above" --image 4096 --patch 1)
  vitfreeze_schedule_expects(json_finite_at_smallest_t0 0 "\"initial_lr_multiplier\":999999" --t0 0.01 --format json)
  vitfreeze_schedule_expects(linear_published_t0 0 "schedule linear, t0 0.5" --schedule linear)

  add_test(NAME cli:pretrain_resume_history_and_data
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/resume_history_and_data.sh $<TARGET_FILE:vitfreeze_pretrain>
                   /usr/share/datasets/fashion-mnist ${_vf_cli_work}/resume)
  set_tests_properties(cli:pretrain_resume_history_and_data PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT OMP_NUM_THREADS=1)
endif()
