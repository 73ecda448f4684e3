#include "loads/common/target_allow.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "loads/common/url.h"

namespace loads::common {
namespace {

// An address as 16 bytes (IPv4 in the last 4); false if `text` is not one.
bool ParseAddress(const std::string& text, uint8_t out[16], bool* v4) {
  std::memset(out, 0, 16);
  if (inet_pton(AF_INET, text.c_str(), out + 12) == 1) {
    *v4 = true;
    return true;
  }
  *v4 = false;
  return inet_pton(AF_INET6, text.c_str(), out) == 1;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

}  // namespace

StatusOr<TargetAllowList> TargetAllowList::Parse(const std::vector<std::string>& patterns) {
  if (patterns.size() > kMaxPatterns) {
    return InvalidArgumentError("--allow-target: at most " + std::to_string(kMaxPatterns) +
                                " patterns (" + std::to_string(patterns.size()) + " given)");
  }
  TargetAllowList list;
  for (const std::string& pattern : patterns) {
    const auto invalid = [&](const std::string& why) {
      return InvalidArgumentError("--allow-target '" + pattern + "': " + why);
    };
    std::string host = AsciiLower(pattern);
    Rule rule;
    // The port: after "]:" for a bracketed IPv6 address, else after the one colon.
    size_t colon = std::string::npos;
    if (host.starts_with("[")) {
      const size_t close = host.find(']');
      if (close == std::string::npos) return invalid("a '[' without its ']'");
      if (close + 1 < host.size()) {
        if (host[close + 1] != ':') return invalid("expected ':PORT' after ']'");
        colon = close + 1;
      }
    } else if (std::count(host.begin(), host.end(), ':') == 1) {
      colon = host.find(':');
    }
    if (colon != std::string::npos) {
      const std::string_view digits(host.data() + colon + 1, host.size() - colon - 1);
      unsigned port = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
      if (ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535) {
        return invalid("the port must be 1 to 65535");
      }
      rule.port = static_cast<uint16_t>(port);
      host.resize(colon);
    }
    if (host.starts_with("[") && host.ends_with("]")) host = host.substr(1, host.size() - 2);
    if (const size_t slash = host.find('/'); slash != std::string::npos) {
      rule.kind = Rule::Kind::kNetwork;
      if (!ParseAddress(host.substr(0, slash), rule.address, &rule.v4)) {
        return invalid("a network is ADDRESS/BITS, such as 10.0.0.0/8 or fd00::/8");
      }
      const std::string_view bits(host.data() + slash + 1, host.size() - slash - 1);
      auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), rule.prefix);
      if (ec != std::errc() || end != bits.data() + bits.size() || rule.prefix < 0 ||
          rule.prefix > (rule.v4 ? 32 : 128)) {
        return invalid(std::string("the prefix must be 0 to ") + (rule.v4 ? "32" : "128"));
      }
      if (rule.v4) rule.prefix += 96;
    } else if (host.starts_with("*.")) {
      rule.kind = Rule::Kind::kSuffix;
      if (!ValidName(host.substr(2)) || host.find('*', 1) != std::string::npos) {
        return invalid("expected *.DOMAIN");
      }
      rule.host = host.substr(1);  // ".example.com"
    } else {
      uint8_t unused[16];
      bool v4 = false;
      if (!ValidName(host) && !ParseAddress(host, unused, &v4)) {
        return invalid("expected a host, host:port, *.domain, an address or a network");
      }
      rule.host = host;
      // An address matches however the URL writes it: compare it as an address.
      if (ParseAddress(host, rule.address, &rule.v4)) {
        rule.kind = Rule::Kind::kNetwork;
        rule.prefix = 128;
      }
    }
    list.rules_.push_back(rule);
    list.patterns_.push_back(pattern);
  }
  return list;
}

bool TargetAllowList::Allows(std::string_view host_in, uint16_t port) const {
  const std::string host = AsciiLower(host_in);
  uint8_t address[16];
  bool v4 = false;
  const bool is_address = ParseAddress(host, address, &v4);
  for (const Rule& rule : rules_) {
    if (rule.port != 0 && rule.port != port) continue;
    switch (rule.kind) {
      case Rule::Kind::kHost:
        if (!is_address && host == rule.host) return true;
        break;
      case Rule::Kind::kSuffix:
        if (!is_address && host.size() > rule.host.size() && host.ends_with(rule.host)) {
          return true;
        }
        break;
      case Rule::Kind::kNetwork: {
        if (!is_address || v4 != rule.v4) break;
        const int full = rule.prefix / 8, rest = rule.prefix % 8;
        if (std::memcmp(address, rule.address, full) != 0) break;
        if (rest != 0) {
          const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
          if ((address[full] & mask) != (rule.address[full] & mask)) break;
        }
        return true;
      }
    }
  }
  return false;
}

}  // namespace loads::common
