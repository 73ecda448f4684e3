#include "loads/common/notify.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "loads/common/url.h"

namespace loads::common {
namespace {

// Mail headers and SMTP commands end at a line break: none may come from the run's text.
std::string OneLine(std::string_view text) {
  std::string out;
  for (char c : text) out += (c == '\r' || c == '\n') ? ' ' : c;
  return out.size() > 200 ? out.substr(0, 200) + "..." : out;
}

bool ValidMailAddress(std::string_view a) {
  const size_t at = a.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == a.size() || a.size() > 254) return false;
  if (a.find('@', at + 1) != std::string_view::npos) return false;
  return std::none_of(a.begin(), a.end(), [](char c) {
    return c <= ' ' || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' || c == 0x7f;
  });
}

struct Easy {
  CURL* curl = curl_easy_init();
  curl_slist* headers = nullptr;
  curl_slist* recipients = nullptr;
  curl_mime* mime = nullptr;
  ~Easy() {
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    curl_slist_free_all(recipients);
    curl_easy_cleanup(curl);
  }
};

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

struct Attempt {
  bool ok = false;
  bool retry = false;
  std::string what;  // "HTTP 200", "Connection refused", ...
};

Attempt PostWebhook(const NotifyTarget& target, const RunNotice& notice,
                    const NotifySettings& settings) {
  Easy easy;
  if (easy.curl == nullptr) return {false, false, "libcurl could not start"};
  easy.headers = curl_slist_append(easy.headers, "Content-Type: application/json");
  curl_easy_setopt(easy.curl, CURLOPT_URL, target.address.c_str());
  curl_easy_setopt(easy.curl, CURLOPT_HTTPHEADER, easy.headers);
  curl_easy_setopt(easy.curl, CURLOPT_POSTFIELDS, notice.report_json.data());
  curl_easy_setopt(easy.curl, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(notice.report_json.size()));
  curl_easy_setopt(easy.curl, CURLOPT_USERAGENT, "loads-notify/1");
  curl_easy_setopt(easy.curl, CURLOPT_TIMEOUT_MS, static_cast<long>(settings.timeout.count()));
  curl_easy_setopt(easy.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy.curl, CURLOPT_FOLLOWLOCATION, 0L);  // the report goes where it was told
  curl_easy_setopt(easy.curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy.curl, CURLOPT_WRITEFUNCTION, Discard);
  const CURLcode code = curl_easy_perform(easy.curl);
  if (code != CURLE_OK) return {false, true, curl_easy_strerror(code)};
  long status = 0;
  curl_easy_getinfo(easy.curl, CURLINFO_RESPONSE_CODE, &status);
  const std::string what = "HTTP " + std::to_string(status);
  if (status >= 200 && status < 300) return {true, false, what};
  return {false, status == 429 || status >= 500, what};
}

Attempt SendMail(const NotifyTarget& target, const RunNotice& notice,
                 const NotifySettings& settings) {
  Easy easy;
  if (easy.curl == nullptr) return {false, false, "libcurl could not start"};
  const std::string url = "smtp://" + settings.smtp;
  curl_easy_setopt(easy.curl, CURLOPT_URL, url.c_str());
  const std::string from = "<" + settings.smtp_from + ">";
  curl_easy_setopt(easy.curl, CURLOPT_MAIL_FROM, from.c_str());
  const std::string to = "<" + target.address + ">";
  easy.recipients = curl_slist_append(easy.recipients, to.c_str());
  curl_easy_setopt(easy.curl, CURLOPT_MAIL_RCPT, easy.recipients);
  const std::string subject = "Subject: " + OneLine(notice.subject);
  const std::string from_header = "From: " + settings.smtp_from;
  const std::string to_header = "To: " + target.address;
  for (const std::string* h : {&subject, &from_header, &to_header}) {
    easy.headers = curl_slist_append(easy.headers, h->c_str());
  }
  curl_easy_setopt(easy.curl, CURLOPT_HTTPHEADER, easy.headers);
  easy.mime = curl_mime_init(easy.curl);
  curl_mimepart* text = curl_mime_addpart(easy.mime);
  curl_mime_data(text, notice.summary_text.data(), notice.summary_text.size());
  curl_mime_type(text, "text/plain; charset=utf-8");
  curl_mime_encoder(text, "quoted-printable");
  curl_mimepart* html = curl_mime_addpart(easy.mime);
  curl_mime_data(html, notice.html_report.data(), notice.html_report.size());
  curl_mime_type(html, "text/html; charset=utf-8");
  curl_mime_filename(html, "loads-report.html");
  curl_mime_encoder(html, "base64");
  curl_easy_setopt(easy.curl, CURLOPT_MIMEPOST, easy.mime);
  curl_easy_setopt(easy.curl, CURLOPT_TIMEOUT_MS, static_cast<long>(settings.timeout.count()));
  curl_easy_setopt(easy.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy.curl, CURLOPT_PROTOCOLS_STR, "smtp");
  const CURLcode code = curl_easy_perform(easy.curl);
  if (code == CURLE_OK) return {true, false, "accepted by " + settings.smtp};
  long status = 0;
  curl_easy_getinfo(easy.curl, CURLINFO_RESPONSE_CODE, &status);
  std::string what = curl_easy_strerror(code);
  if (status > 0) what += " (SMTP " + std::to_string(status) + ")";
  // 5xx is permanent in SMTP; 4xx, timeouts and refused connections may pass later.
  return {false, status < 500, what};
}

std::string Tell(const NotifyTarget& target, const RunNotice& notice,
                 const NotifySettings& settings) {
  const bool mail = target.kind == NotifyTarget::Kind::kEmail;
  const std::string name = (mail ? "email " : "webhook ") + target.address;
  if (mail && settings.smtp.empty()) return name + ": not sent: no --smtp server";
  Attempt attempt;
  int tries = 0;
  for (; tries < std::max(1, settings.attempts); ++tries) {
    if (tries > 0) std::this_thread::sleep_for(std::chrono::seconds(1 << (tries - 1)));
    attempt = mail ? SendMail(target, notice, settings) : PostWebhook(target, notice, settings);
    if (attempt.ok || !attempt.retry) break;
  }
  const int made = std::min(tries + 1, std::max(1, settings.attempts));
  const std::string attempts =
      " after " + std::to_string(made) + (made == 1 ? " attempt" : " attempts");
  if (attempt.ok) return name + ": " + attempt.what + attempts;
  return name + ": not sent: " + attempt.what + attempts;
}

}  // namespace

StatusOr<NotifyTarget> ParseNotifyTarget(std::string_view text) {
  NotifyTarget target;
  target.text = std::string(text);
  if (text.starts_with("webhook:")) {
    target.kind = NotifyTarget::Kind::kWebhook;
    target.address = std::string(text.substr(8));
    auto url = ParseUrl(target.address);
    if (!url.ok()) {
      return InvalidArgumentError("a webhook needs an http(s) URL: " + url.status().message());
    }
    if (url->scheme != "http" && url->scheme != "https") {
      return InvalidArgumentError("a webhook needs an http(s) URL, not " + url->scheme);
    }
    return target;
  }
  if (text.starts_with("email:")) {
    target.kind = NotifyTarget::Kind::kEmail;
    target.address = std::string(text.substr(6));
    if (!ValidMailAddress(target.address)) {
      return InvalidArgumentError("not a mail address: '" + OneLine(target.address) + "'");
    }
    return target;
  }
  return InvalidArgumentError("expected webhook:URL or email:ADDRESS");
}

std::vector<std::string> SendNotices(const std::vector<NotifyTarget>& targets,
                                     const RunNotice& notice, const NotifySettings& settings) {
  std::vector<std::string> lines(targets.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < targets.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        lines[i] = Tell(targets[i], notice, settings);
      } catch (const std::exception& e) {
        lines[i] = targets[i].text + ": not sent: " + e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return lines;
}

}  // namespace loads::common
