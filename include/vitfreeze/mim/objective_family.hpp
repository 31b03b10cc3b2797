#pragma once
// Which explicit model (model/) runs a host objective: every objective of a family shares one
// forward/backward statement (MAE-lite is MAE with other numbers; with a teacher it is mae_distill).
namespace vitfreeze::mim {

enum class ObjectiveFamily { mae, localmim, micl, lomar, mae_distill };

}  // namespace vitfreeze::mim
