#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loads/common/status.h"

namespace loads::common {

// Which hosts a run may send requests to (--allow-target): a list of patterns, each
//   example.com        that host, any port
//   example.com:8080   that host and port
//   *.example.com      any host under example.com (not example.com itself); :PORT may follow
//   10.1.2.3, [::1]    that address (as written in URLs); :PORT may follow
//   10.0.0.0/8, fd00::/8   any address in that network, written as an address in the URL
// Host names are compared case-insensitively and not resolved: a name is allowed by a name
// pattern only, an address by an address or network pattern.
//
// Thread safety: immutable after Parse; any number of threads may call Allows.
class TargetAllowList {
 public:
  // At most this many patterns: an assignment carries them to every worker.
  static constexpr size_t kMaxPatterns = 100;
  // INVALID_ARGUMENT naming the pattern at fault, or saying there are too many.
  static StatusOr<TargetAllowList> Parse(const std::vector<std::string>& patterns);

  bool empty() const { return rules_.empty(); }
  // `host` as a URL holds it (lower case, IPv6 without brackets).
  bool Allows(std::string_view host, uint16_t port) const;
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  struct Rule {
    enum class Kind { kHost, kSuffix, kNetwork } kind = Kind::kHost;
    std::string host;          // kHost: the name or address; kSuffix: ".example.com"
    uint8_t address[16] = {};  // kNetwork (IPv4 in the last 4 bytes, with v4 = true)
    bool v4 = false;
    int prefix = 0;
    uint16_t port = 0;  // 0: any
  };
  std::vector<Rule> rules_;
  std::vector<std::string> patterns_;
};

}  // namespace loads::common
