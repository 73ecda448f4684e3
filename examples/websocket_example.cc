// WebSocket tests: an echo round trip, and a reader that takes everything a server sends.
// Against loads-demo-target (started with --port 8080):
//
//   loads-runner websocket_example.TestWebSocket.test_echo \
//       --server-url ws://127.0.0.1:8080/ws -u 10 --hits 5
//   loads-runner websocket_example.TestWebSocket.test_receive \
//       --server-url 'ws://127.0.0.1:8080/ws?send=100&size=512&close=1' -u 10 --hits 5

#include <loads/loads.h>

#include <string>

class TestWebSocket : public loads::TestCase {
  void test_echo() {
    auto& ws = create_ws(server_url());
    for (int i = 0; i < 10; ++i) {
      const std::string message = "hello " + std::to_string(i);
      ws.send(message);
      auto answer = ws.receive();
      assert_true(answer.has_value(), "the server closed the socket");
      assert_equal(*answer, message);
    }
    ws.close();
  }

  // Receives until the server closes the socket (the demo target does so with close=1).
  void test_receive() {
    auto& ws = create_ws(server_url());
    while (ws.receive()) {
    }
  }

  // A callback sees each message as it arrives. It captures a local, so the socket is closed
  // before the method returns and the local goes away.
  void test_callback() {
    int received = 0;
    auto& ws = create_ws(server_url(), [&](loads::WebSocket&, const std::string&) { ++received; });
    ws.send("ping");
    while (ws.is_open() && received == 0) sleep(std::chrono::milliseconds(1));
    ws.close();
    assert_equal(received, 1);
  }
};

LOADS_TEST(TestWebSocket, test_echo);
LOADS_TEST(TestWebSocket, test_receive);
LOADS_TEST(TestWebSocket, test_callback);
