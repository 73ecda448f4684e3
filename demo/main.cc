// loads-demo-target command line: parses options, starts the server, prints
// the bound address, and stops cleanly on SIGINT/SIGTERM.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "demo/server.h"

namespace {

constexpr char kName[] = "loads-demo-target";
constexpr char kVersion[] = "0.1.0";
constexpr int kMaxThreads = 256;
// Exit codes: 1 = runtime failure (e.g. port in use), 2 = usage error.
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

void PrintHelp() {
  std::printf(
      "Usage: %s [options]\n"
      "\n"
      "Demo HTTP/WebSocket server to point load tests at.\n"
      "\n"
      "Options:\n"
      "  --port N       port to listen on, 0 picks a free one (default 0)\n"
      "  --address A    IP address to listen on (default 127.0.0.1)\n"
      "  --threads N    I/O threads, 1..%d (default 1)\n"
      "  --help         show this help and exit\n"
      "  --version      show the version and exit\n"
      "\n"
      "Once listening, prints one line to stdout:\n"
      "  %s listening on http://ADDRESS:PORT\n"
      "\n"
      "Endpoints: /  /bytes/N  /echo  /delay/MS  /status/CODE  /redirect/N\n"
      "  /cookies/set?name=value  /cookies  /headers  /close  /garbage  /stats\n"
      "  /ws[?send=N&size=S] (WebSocket echo)\n",
      kName, kMaxThreads, kName);
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kName, message.c_str());
  return kExitUsage;
}

std::optional<long> ParseInt(std::string_view text, long min, long max) {
  long value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

std::string InvalidValue(std::string_view option, std::string_view value,
                         std::string_view expected) {
  return "invalid value for " + std::string(option) + ": '" + std::string(value) + "' (expected " +
         std::string(expected) + ")";
}

}  // namespace

int main(int argc, char** argv) {
  loads::demo::ServerOptions options;

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintHelp();
      return 0;
    }
    if (arg == "--version") {
      std::printf("%s %s\n", kName, kVersion);
      return 0;
    }
    // Accept both "--opt value" and "--opt=value".
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name != "--port" && name != "--address" && name != "--threads") {
      if (!arg.starts_with("-"))
        return UsageError("unexpected argument '" + std::string(arg) + "'");
      return UsageError("unknown option '" + std::string(name) + "' (see --help)");
    }
    if (!value) {
      if (i + 1 >= argc) return UsageError("missing value for " + std::string(name));
      value = argv[++i];
    }

    if (name == "--port") {
      const auto port = ParseInt(*value, 0, 65535);
      if (!port) return UsageError(InvalidValue(name, *value, "an integer 0..65535"));
      options.port = static_cast<unsigned short>(*port);
    } else if (name == "--threads") {
      const auto threads = ParseInt(*value, 1, kMaxThreads);
      if (!threads) {
        return UsageError(
            InvalidValue(name, *value, "an integer 1.." + std::to_string(kMaxThreads)));
      }
      options.threads = static_cast<int>(*threads);
    } else {
      boost::system::error_code ec;
      boost::asio::ip::make_address(std::string(*value), ec);
      if (ec) return UsageError(InvalidValue(name, *value, "an IPv4 or IPv6 address"));
      options.address = std::string(*value);
    }
  }

  loads::demo::Server server(options);

  // Installed before the "listening" line so that a script which signals us
  // right after reading it still gets a clean shutdown.
  boost::asio::io_context signal_context(1);
  boost::asio::signal_set signals(signal_context, SIGINT, SIGTERM);
  signals.async_wait([&server](const boost::system::error_code& ec, int) {
    if (!ec) server.Stop();
  });

  unsigned short port = 0;
  try {
    port = server.Start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kName, e.what());
    return kExitFailure;
  }

  const bool ipv6 = options.address.find(':') != std::string::npos;
  std::printf("%s listening on http://%s%s%s:%u\n", kName, ipv6 ? "[" : "", options.address.c_str(),
              ipv6 ? "]" : "", static_cast<unsigned>(port));
  std::fflush(stdout);

  std::thread signal_thread([&signal_context] { signal_context.run(); });
  server.Run();
  signal_context.stop();
  signal_thread.join();
  return 0;
}
