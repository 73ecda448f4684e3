// loads-demo-target: the bundled HTTP/WebSocket server that the README demo
// load-tests and that integration tests use as a well-known target.
//
// Ownership: a Server owns its listening socket, its io_context threads and
// every connection it accepts; destroying it stops everything and releases
// the port. Connections never outlive the Server.
//
// Thread-safety: Start() and Run() must be called from one thread (the owner),
// in that order. Stop() may be called from any thread (for instance a signal
// handler's thread), any number of times, before or during Run().
//
// Endpoints (HTTP/1.1 and 1.0, keep-alive honoured; see server.cc for details):
//   GET /                  200 "Hello from loads-demo-target\n"
//   GET /bytes/N           N (<= 10 MiB) bytes of application/octet-stream
//   ANY /echo              the request body, with the request's Content-Type
//   GET /delay/MS          200 after MS (<= 60000) milliseconds
//   GET /status/CODE       that status (200..599)
//   GET /redirect/N        exactly N redirects (/redirect/N-1 ... /redirect/1, /), then 200
//                          (N <= 100)
//   GET /cookies/set?a=b   Set-Cookie per pair;  GET /cookies lists cookies
//   GET /headers           the request headers, one "Name: value" per line
//   GET /close             closes the connection without a response
//   GET /garbage           writes a non-HTTP response and closes
//   GET /stats             JSON counters since start
//   GET /ws[?send=N&size=S&close=1]  WebSocket echo, optionally sending N
//                          messages of S 'x' bytes first (defaults: send=0,
//                          size=16); with close=1 the server then closes the
//                          socket instead of echoing
// HEAD is accepted wherever GET is; other methods there get 405. Unknown
// paths get 404, /ws without an Upgrade 426, bodies over 16 MiB 413, and
// malformed requests 400 (then the connection is closed). 204 and 304 carry
// neither a body nor Content-Length, as HTTP requires.

#ifndef LOADS_DEMO_SERVER_H_
#define LOADS_DEMO_SERVER_H_

#include <memory>
#include <string>

namespace loads::demo {

struct ServerOptions {
  std::string address = "127.0.0.1";  // An IP literal; no name resolution.
  unsigned short port = 0;            // 0 lets the kernel pick a free port.
  int threads = 1;                    // Number of I/O threads, >= 1.
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. Returns the bound port (useful when options.port is 0).
  // Throws std::runtime_error with a readable message when the address is
  // invalid or cannot be bound.
  unsigned short Start();

  // Serves connections on options.threads threads (the caller's thread is one
  // of them) and returns once Stop() has been called.
  void Run();

  // Makes Run() return soon; open connections are dropped.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loads::demo

#endif  // LOADS_DEMO_SERVER_H_
