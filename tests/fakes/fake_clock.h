#pragma once

#include <chrono>

#include "loads/controller/clock.h"

namespace loads::testing {

// A clock that moves only when told, for the controller's timeouts in unit tests.
// Thread safety: none; tests drive it from one thread.
class FakeClock : public controller::Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override { return steady_; }
  std::chrono::system_clock::time_point WallNow() const override { return wall_; }
  void Advance(std::chrono::milliseconds d) {
    steady_ += d;
    wall_ += d;
  }

 private:
  std::chrono::steady_clock::time_point steady_{std::chrono::hours(1000)};
  std::chrono::system_clock::time_point wall_{std::chrono::seconds(1'700'000'000)};
};

}  // namespace loads::testing
