#pragma once
// Everything in vitfreeze::data: datasets and their readers, per-sample transforms, the loader.
#include "vitfreeze/data/byte_reader.hpp"
#include "vitfreeze/data/cifar.hpp"
#include "vitfreeze/data/crop.hpp"
#include "vitfreeze/data/dataset.hpp"
#include "vitfreeze/data/idx.hpp"
#include "vitfreeze/data/image_folder.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/data/normalize.hpp"
#include "vitfreeze/data/resample.hpp"
#include "vitfreeze/data/resize.hpp"
#include "vitfreeze/data/stb_image.hpp"
#include "vitfreeze/data/transform.hpp"
