#pragma once

#include "loads/common/scenario.h"
#include "loads/worker/engine.h"

// Exported from libloads.so, which hides everything else (see loads/loads.h).
#pragma GCC visibility push(default)

namespace loads::worker {

// The test that runs a scenario (loads/common/scenario.h); its name is
// common::MakeScenarioName(scenario).
TestSpec MakeScenarioTest(common::Scenario scenario);

}  // namespace loads::worker

#pragma GCC visibility pop
