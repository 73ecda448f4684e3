#pragma once

#include "loads/common/scenario.h"
#include "loads/worker/engine.h"

namespace loads::worker {

// The test that runs a scenario (loads/common/scenario.h); its name is
// common::MakeScenarioName(scenario).
TestSpec MakeScenarioTest(common::Scenario scenario);

}  // namespace loads::worker
