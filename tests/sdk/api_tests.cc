// Checks of the public test API (loads/loads.h), written the way a user writes a test library:
// only the public header, only the documented behaviour. Every method is one check, run by
// tests/integration/test_api.py with loads-runner against loads-demo-target:
//
//   loads-runner api_tests.TestApi.test_json --test-path build/tests/sdk
//       --server-url http://127.0.0.1:8080/ -u 2 --hits 2
//
// server_url() is the demo target's base URL, ending with "/". Each user runs a method several
// times with the same session, so every method leaves the session as it found it (cookies,
// default headers, redirect limit) and works whatever execution it is.

#include <loads/loads.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Undoes URL encoding (%XX, and '+' for a space as in forms), so a check does not depend on
// which of the valid encodings the client chose.
std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// The demo's /cookies/set answers with one "name=value" line per query pair, as received (not
// decoded), in the order of the query: a faithful echo of the query string.
Pairs EchoedQuery(std::string_view body) {
  Pairs pairs;
  while (!body.empty()) {
    const size_t newline = body.find('\n');
    std::string_view line = body.substr(0, newline);
    body = newline == std::string_view::npos ? std::string_view() : body.substr(newline + 1);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    pairs.emplace_back(PercentDecode(line.substr(0, eq)),
                       eq == std::string_view::npos ? "" : PercentDecode(line.substr(eq + 1)));
  }
  return pairs;
}

std::string Show(const Pairs& pairs) {
  std::string out;
  for (const auto& [name, value] : pairs) out += "[" + name + "=" + value + "]";
  return out;
}

// The demo's /headers lists the request headers as "Name: value" lines; this is the value of
// the first one named `name` (case-insensitive), if any.
std::optional<std::string> EchoedHeader(std::string_view body, std::string_view name) {
  const std::string wanted = Lower(name) + ": ";
  while (!body.empty()) {
    const size_t newline = body.find('\n');
    std::string_view line = body.substr(0, newline);
    body = newline == std::string_view::npos ? std::string_view() : body.substr(newline + 1);
    if (line.size() >= wanted.size() && Lower(line.substr(0, wanted.size())) == wanted) {
      return std::string(line.substr(wanted.size()));
    }
  }
  return std::nullopt;
}

int CountEchoedHeader(std::string_view body, std::string_view name) {
  const std::string wanted = Lower(name) + ": ";
  int count = 0;
  while (!body.empty()) {
    const size_t newline = body.find('\n');
    std::string_view line = body.substr(0, newline);
    body = newline == std::string_view::npos ? std::string_view() : body.substr(newline + 1);
    if (line.size() >= wanted.size() && Lower(line.substr(0, wanted.size())) == wanted) ++count;
  }
  return count;
}

// Header values we add to the session are removed again by name.
void RemoveHeader(loads::Headers& headers, std::string_view name) {
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const auto& h) { return Lower(h.first) == Lower(name); }),
                headers.end());
}

}  // namespace

class TestApi : public loads::TestCase {
 public:
  TestApi() = default;

  // ---- HTTP requests ---------------------------------------------------------------------

  // params are URL-encoded and appended to the query; the demo echoes the query it received.
  void test_params() {
    auto res = session().get(url("cookies/set"), {.params = {{"a", "b c"}, {"n", "1"}}});
    assert_equal(res.status, 200, "GET /cookies/set with params");
    assert_equal(Show(EchoedQuery(res.body)), Show({{"a", "b c"}, {"n", "1"}}),
                 "query received by the server");
    assert_true(res.body.find(' ') == std::string::npos, "a space was sent unencoded");
    assert_in("/cookies/set?", res.url, "Response::url has no query");

    // Characters that mean something in a query must be encoded to survive as data.
    res = session().get(url("cookies/set"), {.params = {{"k&=", "v&w=x y"}}});
    assert_equal(res.status, 200, "GET /cookies/set with reserved characters");
    assert_equal(Show(EchoedQuery(res.body)), Show({{"k&=", "v&w=x y"}}),
                 "reserved characters in params");

    // A URL that already has a query: params come after it.
    res = session().get(url("cookies/set?z=9"), {.params = {{"a", "1"}}});
    assert_equal(res.status, 200, "GET /cookies/set?z=9 with params");
    assert_equal(Show(EchoedQuery(res.body)), Show({{"z", "9"}, {"a", "1"}}),
                 "params appended to an existing query");
    session().clear_cookies();  // /cookies/set stored them
  }

  void test_post_text() {
    auto res = session().post(url("echo"), {.body = "hello body"});
    assert_equal(res.status, 200);
    assert_equal(res.body, std::string("hello body"));

    // A body much bigger than a socket buffer, with every byte value.
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 % 256);
    res = session().post(url("echo"),
                         {.headers = {{"Content-Type", "application/x-test"}}, .body = big});
    assert_equal(res.status, 200);
    assert_equal(res.body.size(), big.size(), "size of the echoed 300000-byte body");
    assert_true(res.body == big, "the echoed 300000-byte body differs");
    assert_equal(res.header("content-type"), std::string_view("application/x-test"),
                 "Content-Type of the request, as echoed");
  }

  void test_json() {
    const nlohmann::json sent = {
        {"name", "x"}, {"n", 3}, {"list", {1, 2, 3}}, {"nested", {{"ok", true}, {"u", "é\"\\"}}}};
    auto res = session().post(url("echo"), {.json = sent});
    assert_equal(res.status, 200);
    // The demo echoes the request's Content-Type: the session sent application/json.
    assert_in("application/json", res.header("Content-Type"), "Content-Type sent with .json");
    assert_equal(res.json(), sent, "JSON round trip");

    // .json overrides .body.
    res = session().post(url("echo"), {.body = "not json", .json = nlohmann::json::array({1})});
    assert_equal(res.json(), nlohmann::json::array({1}), ".json did not override .body");

    // An explicit Content-Type is kept.
    res = session().put(url("echo"), {.headers = {{"Content-Type", "application/vnd.x+json"}},
                                      .json = nlohmann::json{{"k", "v"}}});
    assert_equal(res.header("content-type"), std::string_view("application/vnd.x+json"));
    assert_equal(res.json()["k"], nlohmann::json("v"));
  }

  // The usage shown in loads.h's own comment: {.json = {{"name", "x"}}} sends {"name":"x"}.
  void test_json_literal() {
    auto res = session().post(url("echo"), {.json = {{"name", "x"}}, .name = "create item"});
    assert_equal(res.status, 200);
    assert_equal(res.json(), nlohmann::json::object({{"name", "x"}}),
                 "body sent for {.json = {{\"name\", \"x\"}}} (loads.h's example)");
  }

  void test_methods() {
    auto res = session().put(url("echo"), {.body = "put body"});
    assert_equal(res.status, 200, "PUT /echo");
    assert_equal(res.body, std::string("put body"), "PUT /echo");

    res = session().patch(url("echo"), {.body = "patch body"});
    assert_equal(res.status, 200, "PATCH /echo");
    assert_equal(res.body, std::string("patch body"), "PATCH /echo");

    res = session().delete_(url("echo"));
    assert_equal(res.status, 200, "DELETE /echo");
    assert_equal(res.body, std::string(), "DELETE /echo");

    res = session().options(url("echo"));
    assert_equal(res.status, 200, "OPTIONS /echo");

    res = session().request("POST", url("echo"), {.body = "generic"});
    assert_equal(res.status, 200, "request(\"POST\") /echo");
    assert_equal(res.body, std::string("generic"), "request(\"POST\") /echo");

    // The demo allows only GET and HEAD elsewhere.
    res = session().post(url("headers"), {.body = "x"});
    assert_equal(res.status, 405, "POST /headers");
    assert_false(res.ok(), "405 is not ok()");
  }

  // A HEAD response announces a body it does not carry: the session must not wait for it.
  void test_head() {
    auto res = session().head(url("echo"));
    assert_equal(res.status, 200, "HEAD /echo");
    assert_equal(res.body, std::string(), "HEAD /echo");

    res = session().head(url(""));
    assert_equal(res.status, 200, "HEAD /");
    assert_equal(res.header("Content-Length"), std::string_view("29"), "HEAD / Content-Length");
    assert_equal(res.body, std::string(), "HEAD / has a body");
    // The kept-alive connection is still in step.
    res = session().get(url(""));
    assert_equal(res.status, 200, "GET / after HEAD /");
    assert_equal(res.body, std::string("Hello from loads-demo-target\n"), "GET / after HEAD /");
  }

  void test_default_headers() {
    RemoveHeader(session().headers(), "X-Loads-Default");
    session().headers().emplace_back("X-Loads-Default", "d1");
    auto res = session().get(url("headers"));
    auto second = session().get(url("headers"));
    RemoveHeader(session().headers(), "X-Loads-Default");
    assert_equal(res.status, 200);
    assert_equal(EchoedHeader(res.body, "X-Loads-Default").value_or("<missing>"), std::string("d1"),
                 "session header in the first request");
    assert_equal(EchoedHeader(second.body, "X-Loads-Default").value_or("<missing>"),
                 std::string("d1"), "session header in the second request");
    // Removed from the session: no longer sent.
    res = session().get(url("headers"));
    assert_false(EchoedHeader(res.body, "X-Loads-Default").has_value(),
                 "a removed session header is still sent");
  }

  void test_request_headers() {
    auto res = session().get(
        url("headers"), {.headers = {{"X-Request-One", "r1"}, {"X-Request-Two", "two words"}}});
    assert_equal(res.status, 200);
    assert_equal(EchoedHeader(res.body, "X-Request-One").value_or("<missing>"), std::string("r1"));
    assert_equal(EchoedHeader(res.body, "X-Request-Two").value_or("<missing>"),
                 std::string("two words"));
    assert_equal(CountEchoedHeader(res.body, "Host"), 1, "Host headers sent");
    // Per-request headers are not remembered by the session.
    res = session().get(url("headers"));
    assert_false(EchoedHeader(res.body, "X-Request-One").has_value(),
                 "a per-request header leaked into the next request");
  }

  void test_cookies() {
    session().clear_cookies();
    auto res = session().get(url("cookies/set?x=1"));
    assert_equal(res.status, 200, "GET /cookies/set?x=1");
    assert_true(res.header("Set-Cookie").size() > 0, "no Set-Cookie in the answer");
    res = session().get(url("cookies"));
    assert_equal(res.status, 200, "GET /cookies");
    assert_equal(res.body, std::string("x=1\n"), "cookies the server received");
    assert_equal(session().cookie(server_url(), "x").value_or("<none>"), std::string("1"),
                 "session().cookie(server_url(), \"x\")");
    assert_equal(session().cookie(url("cookies"), "x").value_or("<none>"), std::string("1"),
                 "session().cookie(.../cookies, \"x\")");
    assert_false(session().cookie(server_url(), "nope").has_value(), "an unknown cookie");

    // A second cookie, and a new value for the first.
    session().get(url("cookies/set?y=2&x=3"));
    res = session().get(url("cookies"));
    assert_equal(res.body, std::string("x=3\ny=2\n"), "cookies after an update");
    session().clear_cookies();
  }

  void test_clear_cookies() {
    session().get(url("cookies/set?x=1"));
    assert_equal(session().cookie(server_url(), "x").value_or("<none>"), std::string("1"));
    session().clear_cookies();
    assert_false(session().cookie(server_url(), "x").has_value(), "cookie after clear_cookies()");
    auto res = session().get(url("cookies"));
    assert_equal(res.status, 200);
    assert_equal(res.body, std::string(), "cookies sent after clear_cookies()");
  }

  // Exactly /redirect/3 and nothing else: 4 hits per execution (test_api.py counts them).
  void test_redirects() {
    auto res = session().get(url("redirect/3"));
    assert_equal(res.status, 200);
    assert_equal(res.redirects, 3);
    assert_equal(res.url, url(""), "the URL that answered");
    assert_equal(res.body, std::string("Hello from loads-demo-target\n"));
  }

  void test_no_redirects() {
    auto res = session().get(url("redirect/3"), {.allow_redirects = false});
    assert_equal(res.status, 302);
    assert_equal(res.redirects, 0);
    assert_equal(res.header("location"), std::string_view("/redirect/2"));
    assert_true(res.ok(), "a 302 is ok()");
  }

  void test_too_many_redirects() {
    session().set_max_redirects(1);
    std::string kind = "<no error>";
    std::string message;
    try {
      session().get(url("redirect/3"));
    } catch (const loads::NetworkError& error) {
      kind = error.kind();
      message = error.what();
    }
    // One redirect is still allowed.
    auto res = session().get(url("redirect/1"));
    session().set_max_redirects(10);  // the documented default, for the next execution
    assert_equal(kind, std::string("too_many_redirects"), message);
    assert_equal(res.status, 200, "/redirect/1 with set_max_redirects(1)");
    assert_equal(res.redirects, 1, "/redirect/1 with set_max_redirects(1)");
  }

  // Any status is a response, not an error.
  void test_status_codes() {
    auto res = session().get(url("status/503"));
    assert_equal(res.status, 503);
    assert_false(res.ok(), "503 is ok()");
    assert_equal(res.body, std::string("status 503\n"));
    res = session().get(url("status/404"));
    assert_equal(res.status, 404);
    res = session().get(url("status/201"));
    assert_equal(res.status, 201);
    assert_true(res.ok(), "201 is not ok()");
    assert_equal(res.reason, std::string("Created"));
  }

  void test_timeout() {
    const auto started = std::chrono::steady_clock::now();
    std::string kind = "<no error>";
    std::string message;
    try {
      session().get(url("delay/2000"), {.timeout = std::chrono::milliseconds(200)});
    } catch (const loads::NetworkError& error) {
      kind = error.kind();
      message = error.what();
    }
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    assert_equal(kind, std::string("timeout"), message);
    assert_less(waited.count(), 1500, "ms waited for a 200 ms timeout");
    assert_greater(waited.count(), 150, "ms waited for a 200 ms timeout");
    // The session is usable after a timeout, and the timeout was this request's only.
    auto res = session().get(url("delay/300"));
    assert_equal(res.status, 200, "GET /delay/300 after a timeout");
    assert_equal(res.body, std::string("delayed 300 ms\n"));
  }

  // Hits are grouped under the request's name (test_api.py reads the report's urls).
  void test_named_request() {
    auto res = session().get(url("status/200"), {.name = "api grouped"});
    assert_equal(res.status, 200);
    res = session().get(url("status/201"), {.name = "api grouped"});
    assert_equal(res.status, 201);
    res = session().get(url(""));
    assert_equal(res.status, 200);
  }

  void test_sleep() {
    const auto started = std::chrono::steady_clock::now();
    sleep(std::chrono::milliseconds(200));
    const auto slept = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    assert_greater(slept.count(), 190, "ms slept by sleep(200 ms)");
    assert_less(slept.count(), 1500, "ms slept by sleep(200 ms)");
    sleep(std::chrono::duration<double>(0.05));
    sleep(std::chrono::seconds(0));
  }

  // One TestApi object per virtual user: execution_index() counts this object's executions and
  // user_index() stays the same. The counter "user_<index>" lets test_api.py check the indexes.
  void test_indexes() {
    assert_equal(execution_index(), executions_seen_, "execution_index()");
    ++executions_seen_;
    if (!first_user_index_) first_user_index_ = user_index();
    assert_equal(user_index(), *first_user_index_, "user_index() changed between executions");
    assert_true(user_index() >= 0, "user_index() < 0");
    incr_counter("user_" + std::to_string(user_index()));
    incr_counter("executions");
  }

  // ---- WebSockets ------------------------------------------------------------------------

  // Echo of a text and a binary message: 2 sent, 2 received, 5 + 6 bytes each way.
  void test_websocket() {
    auto& ws = create_ws(ws_url("ws"));
    assert_true(ws.is_open(), "not open after create_ws");
    assert_equal(ws.url(), ws_url("ws"));
    ws.send("hello");
    auto answer = ws.receive();
    assert_true(answer.has_value(), "the server closed the socket instead of echoing");
    assert_equal(*answer, std::string("hello"), "echo of a text message");

    const std::string binary("\x00\x01\xff\xfe\n\x7f", 6);
    ws.send_binary(binary);
    answer = ws.receive();
    assert_true(answer.has_value(), "the server closed the socket instead of echoing");
    assert_equal(answer->size(), binary.size(), "size of the echoed binary message");
    assert_true(*answer == binary, "the echoed binary message differs");

    ws.close();
    assert_false(ws.is_open(), "open after close()");
    ws.close();  // does nothing the second time
    assert_false(ws.is_open(), "open after a second close()");
  }

  // With a callback: the demo sends 3 messages of 10 'x' on its own.
  void test_websocket_callback() {
    int received = 0;
    std::string bad;
    auto& ws =
        create_ws(ws_url("ws?send=3&size=10"), [&](loads::WebSocket&, const std::string& message) {
          ++received;
          if (message != std::string(10, 'x')) bad = message;
        });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (ws.is_open() && received < 3 && std::chrono::steady_clock::now() < deadline) {
      sleep(std::chrono::milliseconds(1));
    }
    // Nothing more is coming: a 4th message would show up here.
    sleep(std::chrono::milliseconds(50));
    const bool was_open = ws.is_open();
    // Closed before any assertion: the callback uses locals of this method.
    ws.close();
    assert_true(was_open, "the server closed the socket");
    assert_false(ws.is_open(), "open after close()");
    assert_equal(received, 3, "messages passed to the callback");
    assert_equal(bad, std::string(), "a message that is not 10 'x'");
  }

 private:
  std::string url(std::string_view path) const { return server_url() + std::string(path); }

  // server_url() with ws:// (wss://) instead of http:// (https://).
  std::string ws_url(std::string_view path) const {
    std::string base = server_url();
    if (base.rfind("http", 0) == 0) base.replace(0, 4, "ws");
    return base + std::string(path);
  }

  int64_t executions_seen_ = 0;
  std::optional<int64_t> first_user_index_;
};

LOADS_TEST(TestApi, test_params);
LOADS_TEST(TestApi, test_post_text);
LOADS_TEST(TestApi, test_json);
LOADS_TEST(TestApi, test_json_literal);
LOADS_TEST(TestApi, test_methods);
LOADS_TEST(TestApi, test_head);
LOADS_TEST(TestApi, test_default_headers);
LOADS_TEST(TestApi, test_request_headers);
LOADS_TEST(TestApi, test_cookies);
LOADS_TEST(TestApi, test_clear_cookies);
LOADS_TEST(TestApi, test_redirects);
LOADS_TEST(TestApi, test_no_redirects);
LOADS_TEST(TestApi, test_too_many_redirects);
LOADS_TEST(TestApi, test_status_codes);
LOADS_TEST(TestApi, test_timeout);
LOADS_TEST(TestApi, test_named_request);
LOADS_TEST(TestApi, test_sleep);
LOADS_TEST(TestApi, test_indexes);
LOADS_TEST(TestApi, test_websocket);
LOADS_TEST(TestApi, test_websocket_callback);
