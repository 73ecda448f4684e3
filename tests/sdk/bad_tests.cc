// Test code gone wrong, as users write it by mistake: after a second and a half, user 0 of each
// test misbehaves while every other user keeps loading the target. loads-runner must still end,
// say what happened and report the other users' results
// (tests/integration/test_crash_isolation.py).

#include <loads/loads.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace {

using Clock = std::chrono::steady_clock;

int Recurse(int depth) {
  volatile char frame[1024];
  std::memset(const_cast<char*>(frame), depth & 0xff, sizeof(frame));
  return Recurse(depth + 1) + frame[depth % sizeof(frame)];
}

class Bad : public loads::TestCase {
 public:
  void segfault() {
    if (Due()) *static_cast<volatile int*>(nullptr) = 1;
    Get();
  }
  void abort() {
    if (Due()) std::abort();
    Get();
  }
  void stack_overflow() {
    if (Due()) Recurse(0);
    Get();
  }
  // Never yields again: the whole engine thread is taken.
  void busy_loop() {
    if (Due()) {
      volatile uint64_t spins = 0;
      while (true) spins = spins + 1;
    }
    Get();
  }
  // Swallows everything, the run's cancellation included, and goes on forever.
  void catch_all_loop() {
    if (Due()) {
      while (true) {
        try {
          Get();
          sleep(std::chrono::milliseconds(10));
        } catch (...) {
        }
      }
    }
    Get();
  }
  // Forks a process that outlives the run without exec: it holds whatever the engine had open.
  void fork_and_leave() {
    if (user_index() == 0 && execution_index() == 0 && ::fork() == 0) {
      ::sleep(8);
      ::_exit(0);
    }
    Get();
  }
  // A test that calls exit() itself.
  void exit() {
    if (Due()) std::exit(3);
    Get();
  }

 private:
  bool Due() const { return user_index() == 0 && Clock::now() - created_ > kAfter; }
  void Get() { session().get(server_url()); }

  static constexpr auto kAfter = std::chrono::milliseconds(1500);
  const Clock::time_point created_ = Clock::now();
};

// A library whose global initializer throws (LOADS_THROWING_INITIALIZER).
#ifdef LOADS_THROWING_INITIALIZER
const int kInitialized = []() -> int {
  throw std::runtime_error("the configuration file /nonexistent/loads.cfg is missing");
}();
#endif

}  // namespace

LOADS_TEST(Bad, segfault);
LOADS_TEST(Bad, abort);
LOADS_TEST(Bad, stack_overflow);
LOADS_TEST(Bad, busy_loop);
LOADS_TEST(Bad, catch_all_loop);
LOADS_TEST(Bad, exit);
LOADS_TEST(Bad, fork_and_leave);
