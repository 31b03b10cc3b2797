# oneDNN (Debian libdnnl-dev) for the CPU backend's float GEMM, as the imported target vitfreeze::dnnl.
# Found by its files, not by its CMake package: Debian's dnnl-config.cmake demands the OpenCL
# development files for oneDNN's GPU runtime, which a CPU build never uses.
if(NOT TARGET vitfreeze::dnnl)
  find_path(VITFREEZE_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(VITFREEZE_DNNL_LIBRARY NAMES dnnl)
  if(VITFREEZE_DNNL_INCLUDE_DIR AND VITFREEZE_DNNL_LIBRARY)
    add_library(vitfreeze::dnnl INTERFACE IMPORTED)
    set_target_properties(vitfreeze::dnnl PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${VITFREEZE_DNNL_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${VITFREEZE_DNNL_LIBRARY}"
      INTERFACE_COMPILE_DEFINITIONS VITFREEZE_WITH_DNNL)
  endif()
endif()
