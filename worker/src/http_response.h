#pragma once

// Reading one HTTP response from the bytes a server sends, as they arrive: Beast's parser with
// the engine's limits, and the care Boost 1.74's parser needs to keep them. Header-only, so that
// the engine (net.cc) and the fuzzer (fuzz/fuzz_http_response.cc) run the same code without one
// more Beast translation unit in libloads.
//
// Thread safety: one reader per response, used by one thread.

#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>

namespace loads::worker {

// A response body larger than this is an error of its own (body_too_large), as is a header
// section larger than kHeaderLimit: a hostile server must not fill a worker's memory.
inline constexpr uint64_t kBodyLimit = 64ull << 20;
inline constexpr uint32_t kHeaderLimit = 64 * 1024;

class ResponseReader {
 public:
  using Parser = boost::beast::http::response_parser<boost::beast::http::string_body>;

  // head: the response to a HEAD request (a header section only, whatever it announces).
  explicit ResponseReader(bool head) {
    parser_.body_limit(kBodyLimit);
    parser_.header_limit(kHeaderLimit);
    // The header is parsed alone, then the body eagerly: Boost 1.74's parser, when eager,
    // forgets a body_limit error found at the end of the header if body bytes follow in the
    // same buffer, and reads (and first reserves) a body of any size.
    parser_.eager(false);
    if (head) parser_.skip(true);
  }

  // Parses what `buffer` holds, consuming what it used. Returns {} when the response is
  // complete, http::error::need_more when more bytes must be read into `buffer` first, or why
  // the response cannot be read (malformed, header_limit, body_limit).
  boost::beast::error_code Feed(boost::beast::flat_buffer& buffer) {
    namespace http = boost::beast::http;
    while (true) {
      boost::beast::error_code ec;
      const bool in_header = !parser_.is_header_done();
      const size_t used = parser_.put(buffer.data(), ec);
      buffer.consume(used);
      if (in_header) {
        // Beast 1.74 applies header_limit to what one put() sees, and consumes complete fields
        // as it goes: a header section fed in pieces would have no limit.
        header_bytes_ += used;
        if (header_bytes_ > kHeaderLimit ||
            (!parser_.is_header_done() && header_bytes_ + buffer.size() > kHeaderLimit)) {
          return http::error::header_limit;
        }
      }
      if (ec) return ec;  // need_more included
      if (parser_.is_done()) return {};
      if (parser_.is_header_done()) parser_.eager(true);
      if (buffer.size() == 0) return http::error::need_more;
    }
  }

  // The server closed the connection: completes a body delimited by the end of the connection,
  // else says the response was cut (partial_message) or never began (end_of_stream).
  boost::beast::error_code End() {
    namespace http = boost::beast::http;
    if (!parser_.got_some()) return http::error::end_of_stream;
    boost::beast::error_code ec;
    parser_.put_eof(ec);
    if (ec) return ec;
    return parser_.is_done() ? boost::beast::error_code() : http::error::partial_message;
  }

  bool got_some() const { return parser_.got_some(); }
  // Whether the connection cannot carry another response (the body ran to its end).
  bool need_eof() const { return parser_.need_eof(); }
  // The response; complete once Feed or End returned {}.
  Parser::value_type& message() { return parser_.get(); }

 private:
  Parser parser_;
  size_t header_bytes_ = 0;
};

}  // namespace loads::worker
