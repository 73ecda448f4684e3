// The seed's example, and a few more that show outcomes, redirects and custom counters.
//
//   loads-runner example.TestWebSite.test_es --server-url http://127.0.0.1:8080/ -u 10 --hits 5

#include <loads/loads.h>

#include <stdexcept>
#include <string>

namespace {

// server_url() ends with a slash or not; paths are appended after exactly one.
std::string Join(const std::string& base, const std::string& path) {
  if (base.empty() || base.back() != '/') return base + "/" + path;
  return base + path;
}

}  // namespace

class TestWebSite : public loads::TestCase {
  void test_es() {
    auto res = session().get(server_url().empty() ? "http://localhost:9200" : server_url());
    assert_equal(res.status, 200);
  }

  // One GET, then the user's executions cycle through success, failure and error.
  void test_mixed() {
    session().get(server_url());
    switch (execution_index() % 3) {
      case 0:
        return;
      case 1:
        fail("deliberate failure");
        return;
      default:
        throw std::runtime_error("deliberate error");
    }
  }

  // Three redirects, then the page: four hits per execution.
  void test_redirect() {
    auto res = session().get(Join(server_url(), "redirect/3"));
    assert_equal(res.status, 200);
    assert_equal(res.redirects, 3);
  }

  void test_counter() {
    session().get(server_url());
    incr_counter("visits");
  }
};

LOADS_TEST(TestWebSite, test_es);
LOADS_TEST(TestWebSite, test_mixed);
LOADS_TEST(TestWebSite, test_redirect);
LOADS_TEST(TestWebSite, test_counter);
