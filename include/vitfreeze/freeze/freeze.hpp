#pragma once
// Progressive layer freezing: schedules, LR policies, the per-step controller and the cost model.
#include "vitfreeze/freeze/constexpr_math.hpp"
#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/freeze/cost_model.hpp"
#include "vitfreeze/freeze/freeze_timing.hpp"
#include "vitfreeze/freeze/lr_mode.hpp"
#include "vitfreeze/freeze/lr_policies.hpp"
#include "vitfreeze/freeze/lr_policy.hpp"
#include "vitfreeze/freeze/runtime_schedule.hpp"
#include "vitfreeze/freeze/schedule.hpp"
#include "vitfreeze/freeze/semantics.hpp"
#include "vitfreeze/freeze/spacing.hpp"
