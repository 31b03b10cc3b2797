#pragma once
// Parameter lives in core/ (the backends and the models read it too); kept here for includes that
// predate the move.
#include "vitfreeze/core/parameter.hpp"
