#pragma once

#include <chrono>

namespace loads::controller {

// Where the controller's logic reads the time, so that tests can drive timeouts with a fake
// (tests/fakes/fake_clock.h) instead of sleeping.
//
// Thread safety: implementations may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  // For timeouts and deadlines.
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  // For what is reported (start and end of runs, snapshot times).
  virtual std::chrono::system_clock::time_point WallNow() const = 0;
};

// The system's clocks. Never null; lives for the whole process.
Clock* RealClock();

}  // namespace loads::controller
