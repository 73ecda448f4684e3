// The parts of the test API that do not touch the network: assertions, outcomes, registration.

#include <algorithm>
#include <cctype>

#include "loads/loads.h"
#include "worker/src/test_registry.h"
#include "worker/src/user_context.h"

namespace loads {

NetworkError::NetworkError(std::string kind, const std::string& message)
    : std::runtime_error(message), kind_(std::move(kind)) {}

std::string_view Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return value;
    }
  }
  return {};
}

nlohmann::json Response::json() const { return nlohmann::json::parse(body); }

namespace internal {

UserContext*& ConstructingContext() {
  thread_local UserContext* context = nullptr;
  return context;
}

std::vector<RegisteredTest>& Registry() {
  static std::vector<RegisteredTest> registry;
  return registry;
}

bool RegisterTest(int abi_version, const char* sdk_version, const char* class_name,
                  const char* method_name, TestFactory factory, TestMethod method) {
  Registry().push_back(
      RegisteredTest{abi_version, sdk_version, class_name, method_name, factory, method});
  return true;
}

void Fail(std::string_view what, std::string_view message, const std::source_location& where) {
  std::string text = "AssertionError: ";
  if (!message.empty()) {
    text += message;
    text += ": ";
  }
  text += what;
  std::string_view file = where.file_name();
  if (const size_t slash = file.rfind('/'); slash != std::string_view::npos) {
    file = file.substr(slash + 1);
  }
  text += " (";
  text += file;
  text += ':';
  text += std::to_string(where.line());
  text += ')';
  throw AssertionFailure(std::move(text));
}

namespace {
UserContext& Require(UserContext* context) {
  if (context == nullptr) {
    throw std::logic_error("this TestCase was not created by the load engine");
  }
  return *context;
}
}  // namespace

}  // namespace internal

TestCase::TestCase() : context_(internal::ConstructingContext()) {}
TestCase::~TestCase() = default;

Session& TestCase::session() { return internal::Require(context_).session(); }

WebSocket& TestCase::create_ws(std::string_view url, WebSocket::Callback callback,
                               const Headers& headers) {
  return internal::Require(context_).CreateWebSocket(url, std::move(callback), headers);
}

void TestCase::incr_counter(std::string_view name, int64_t by) {
  internal::Require(context_).stats().IncrCounter(name, by);
}

void TestCase::sleep(std::chrono::duration<double> seconds) {
  internal::Require(context_).Sleep(seconds);
}

const std::string& TestCase::server_url() const {
  return internal::Require(context_).options().server_url;
}

int64_t TestCase::user_index() const { return internal::Require(context_).user_index(); }

int64_t TestCase::execution_index() const { return internal::Require(context_).execution_index(); }

}  // namespace loads
