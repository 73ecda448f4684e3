// Test libraries whose static initializers are slow (slow_library.so: 4 s, longer than a
// worker's heartbeat timeout) or never return (stuck_library.so), built from this one file with
// LOADS_INIT_SECONDS. Workers load shipped libraries off their protocol thread, so neither makes
// the worker look lost; the stuck one fails its run after the load timeout
// (tests/integration/test_worker_protocol.py, test_faults_distributed.py).

#include <loads/loads.h>

#include <chrono>
#include <thread>

namespace {

const int kInitialized = [] {
  if (LOADS_INIT_SECONDS < 0) {
    while (true) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  std::this_thread::sleep_for(std::chrono::seconds(LOADS_INIT_SECONDS));
  return 1;
}();

class Slow : public loads::TestCase {
 public:
  void get() { session().get(server_url()); }
};

}  // namespace

LOADS_TEST(Slow, get);
