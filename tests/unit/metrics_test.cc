// The controller's Prometheus metrics, read back over HTTP as Prometheus scrapes them: exact
// counts from merged snapshots, names capped per run, every drop reason exported from the start,
// a finished run's series removed after the retention, and the token /metrics asks for.

#include "loads/controller/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>

#include "loads/common/stats.h"

namespace loads::controller {
namespace {

// GET /metrics from 127.0.0.1:port: {status, body}.
std::pair<int, std::string> Scrape(int port, const std::string& token = "") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return {0, ""};
  }
  std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  request += "\r\n";
  if (::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return {0, ""};
  }
  std::string response;
  char buffer[65536];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, n);
  ::close(fd);
  const size_t space = response.find(' ');
  const size_t body = response.find("\r\n\r\n");
  if (space == std::string::npos || body == std::string::npos) return {0, ""};
  return {std::atoi(response.c_str() + space + 1), response.substr(body + 4)};
}

// The samples of `name` in an exposition whose labels include all of `labels`: their values.
std::vector<double> Samples(const std::string& text, const std::string& name,
                            const std::map<std::string, std::string>& labels = {}) {
  std::vector<double> values;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(name + "{") && !line.starts_with(name + " ")) continue;
    bool all = true;
    for (const auto& [key, value] : labels) {
      all = all && line.find(key + "=\"" + value + "\"") != std::string::npos;
    }
    if (all) values.push_back(std::stod(line.substr(line.rfind(' ') + 1)));
  }
  return values;
}

double Sum(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return sum;
}

TEST(Metrics, CountsAreExactNamesCappedAndEveryDropReasonIsThereFromTheStart) {
  Metrics metrics("127.0.0.1:0", std::chrono::seconds(60));
  auto [status, text] = Scrape(metrics.port());
  ASSERT_EQ(status, 200);
  for (const char* reason : Metrics::kDropReasons) {
    EXPECT_EQ(Samples(text, "loads_messages_dropped_total", {{"reason", reason}}),
              std::vector<double>{0})
        << reason;
  }

  metrics.RunStarted("r", "GET http://t/", 5);
  common::RunStats stats;
  for (int i = 0; i < 150; ++i) {
    stats.RecordHit("u" + std::to_string(i), "GET", i < 140 ? 200 : 503, common::HitError::kNone,
                    1'000'000);
    stats.RecordExecution(common::Outcome::kSuccess, "");
  }
  stats.RecordHit("u0", "GET", 0, common::HitError::kTimeout, 0);
  stats.RecordExecution(common::Outcome::kError, "timeout");
  metrics.OnSnapshot("r", stats, 0.002);
  metrics.OnSnapshot("r", stats, 0.002);  // a second snapshot adds
  metrics.Dropped("late");

  std::tie(status, text) = Scrape(metrics.port());
  ASSERT_EQ(status, 200);
  EXPECT_EQ(Samples(text, "loads_planned_users", {{"run", "r"}}), std::vector<double>{5});
  EXPECT_EQ(Samples(text, "loads_hits_total",
                    {{"run", "r"}, {"status_class", "2xx"}, {"test", "GET http://t/"}}),
            std::vector<double>{280});
  EXPECT_EQ(Samples(text, "loads_hits_total", {{"run", "r"}, {"status_class", "5xx"}}),
            std::vector<double>{20});
  EXPECT_EQ(Samples(text, "loads_hit_errors_total", {{"run", "r"}, {"kind", "timeout"}}),
            std::vector<double>{2});
  EXPECT_EQ(Samples(text, "loads_executions_total", {{"run", "r"}, {"outcome", "error"}}),
            std::vector<double>{2});
  // 150 URL names: the first 100 by name, the rest summed under "(other)", nothing lost.
  const auto urls = Samples(text, "loads_url_hits_total", {{"run", "r"}});
  EXPECT_EQ(urls.size(), Metrics::kMaxNamesPerRun + 1);
  EXPECT_EQ(Sum(urls), 2 * 151.0);
  EXPECT_EQ(Samples(text, "loads_url_hits_total", {{"name", "(other)"}}).size(), 1u);
  EXPECT_EQ(Sum(Samples(text, "loads_request_duration_seconds_count", {{"run", "r"}})), 300);
  EXPECT_EQ(Samples(text, "loads_messages_dropped_total", {{"reason", "late"}}),
            std::vector<double>{1});
  EXPECT_EQ(Samples(text, "loads_snapshots_received_total"), std::vector<double>{2});
}

TEST(Metrics, AFinishedRunsSeriesGoAfterTheRetention) {
  Metrics metrics("127.0.0.1:0", std::chrono::seconds(0));
  metrics.RunStarted("gone", "GET http://t/", 1);
  metrics.RunStarted("kept", "GET http://t/", 1);
  common::RunStats stats;
  stats.RecordHit("GET http://t/", "GET", 200, common::HitError::kNone, 1000);
  stats.RecordExecution(common::Outcome::kSuccess, "");
  metrics.OnSnapshot("gone", stats, 0);
  metrics.OnSnapshot("kept", stats, 0);
  metrics.RunEnded("gone");
  metrics.Expire();
  const auto [status, text] = Scrape(metrics.port());
  ASSERT_EQ(status, 200);
  EXPECT_EQ(text.find("run=\"gone\""), std::string::npos);
  EXPECT_EQ(Samples(text, "loads_hits_total", {{"run", "kept"}}), std::vector<double>{1});
}

TEST(Metrics, OnlyTheTokenScrapesWhenOneIsGiven) {
  Metrics metrics("127.0.0.1:0", std::chrono::seconds(60), "s3cret");
  EXPECT_EQ(Scrape(metrics.port()).first, 401);
  EXPECT_EQ(Scrape(metrics.port(), "wrong").first, 401);
  const auto [status, text] = Scrape(metrics.port(), "s3cret");
  EXPECT_EQ(status, 200);
  EXPECT_FALSE(Samples(text, "loads_messages_dropped_total").empty());
}

}  // namespace
}  // namespace loads::controller
