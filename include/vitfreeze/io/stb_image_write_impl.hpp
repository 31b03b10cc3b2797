#pragma once
// stb_image_write, compiled into every translation unit that needs it with internal linkage
// (STB_IMAGE_WRITE_STATIC), so a header-only library can use it without one designated .cpp file
// and without duplicate symbols at link time. Only the in-memory writers are needed (files are
// written atomically by atomic_file.hpp), so stdio support is left out.
// Caveat: a translation unit must not also include <stb_image_write.h> in its default (extern)
// mode before this header; the declarations would then conflict.
#ifndef VITFREEZE_IO_STB_IMAGE_WRITE_IMPL
#define VITFREEZE_IO_STB_IMAGE_WRITE_IMPL
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#endif
