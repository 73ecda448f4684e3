#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "loads/common/status.h"

namespace loads::common {

// Where a run's end is told (--notify): `webhook:URL` POSTs the JSON report to an http(s) URL;
// `email:ADDRESS` mails a short summary with the HTML report attached, through --smtp.
struct NotifyTarget {
  enum class Kind { kWebhook, kEmail };
  Kind kind = Kind::kWebhook;
  std::string address;  // the URL, or the mail address
  std::string text;     // as written
};

// INVALID_ARGUMENT with one line naming the problem.
StatusOr<NotifyTarget> ParseNotifyTarget(std::string_view text);

struct NotifySettings {
  std::string smtp;  // HOST:PORT of the mail server; needed for email targets
  std::string smtp_from = "loads@localhost";
  std::chrono::milliseconds timeout{5000};  // per attempt
  int attempts = 3;                         // 1 s, then 2 s, ... between them
};

// What is told.
struct RunNotice {
  std::string subject;       // one line: the test and the verdict
  std::string summary_text;  // the text report
  std::string report_json;   // the JSON report (the webhook's body)
  std::string html_report;   // attached to mails
};

// Tells every target, each in its own thread, and returns when all are done: one line per target
// saying how it went ("webhook URL: HTTP 200 after 2 attempts", "email ADDRESS: not sent: ...").
// A target is tried at most `attempts` times: again after a connection failure, a timeout, 429
// or a 5xx answer; not after another 4xx. At worst this takes attempts × timeout plus the pauses.
// Never throws.
//
// Thread safety: may be called from any thread (libcurl initialises itself thread-safely since
// 7.84; Debian 12 has 7.88).
std::vector<std::string> SendNotices(const std::vector<NotifyTarget>& targets,
                                     const RunNotice& notice, const NotifySettings& settings);

}  // namespace loads::common
