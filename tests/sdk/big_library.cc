// A test library of more than 5 MiB (a large constant table, as real libraries carry data), for
// the shipping path: gRPC's default 4 MiB message limit must not stop it
// (tests/integration/test_faults_distributed.py).

#include <loads/loads.h>

namespace {

// 5.5 MiB that the linker keeps in the file.
__attribute__((used)) const char kTable[5'767'168] = {1};

class Big : public loads::TestCase {
 public:
  void get() { session().get(server_url(), {.name = std::to_string(kTable[0])}); }
};

}  // namespace

LOADS_TEST(Big, get);
