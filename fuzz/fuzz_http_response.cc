// The bytes a server answers an HTTP request with, read as the engine reads them
// (worker/src/http_response.h), in pieces of varying size; then what the engine does with the
// header of a complete response: its cookies stored and sent back, its Location resolved and
// checked against a target allow-list.
//
// Input: byte 0 picks the piece size (1 to 256), byte 1 whether the request was a HEAD; the
// rest is the response.
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "loads/common/target_allow.h"
#include "loads/common/url.h"
#include "worker/src/cookie_jar.h"
#include "worker/src/http_response.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t piece = 1 + data[0];
  const bool head = data[1] & 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
  loads::worker::ResponseReader reader(head);
  boost::beast::flat_buffer buffer;
  size_t fed = 0;
  boost::beast::error_code ec = http::error::need_more;
  while (ec == http::error::need_more) {
    if (fed == bytes.size()) {
      ec = reader.End();
      break;
    }
    const size_t n = std::min(piece, bytes.size() - fed);
    auto space = buffer.prepare(n);
    std::memcpy(space.data(), bytes.data() + fed, n);
    buffer.commit(n);
    fed += n;
    ec = reader.Feed(buffer);
  }
  if (ec) return 0;  // a refused response is a counted hit error, nothing more
  auto& message = reader.message();
  if (message.body().size() > loads::worker::kBodyLimit) std::abort();
  if (head && !message.body().empty()) std::abort();
  static const auto from = *loads::common::ParseUrl("http://shop.example.com/a/b?q=1");
  static const auto allow = *loads::common::TargetAllowList::Parse({"*.example.com", "10.0.0.0/8"});
  loads::worker::CookieJar jar;
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  for (const auto& field : message) {
    const std::string name = std::string(field.name_string());
    const std::string value = std::string(field.value());
    if (loads::common::AsciiLower(name) == "set-cookie") {
      jar.Store(from, value, now);
    } else if (loads::common::AsciiLower(name) == "location") {
      if (auto next = loads::common::ResolveUrl(from, value); next.ok()) {
        allow.Allows(next->host, next->port);
        if (!loads::common::ParseUrl(next->ToString()).ok()) std::abort();
      }
    }
  }
  const std::string cookie = jar.HeaderFor(from, now);
  // A Cookie header never carries what would end the header line.
  if (cookie.find_first_of("\r\n") != std::string::npos) std::abort();
  return 0;
}
