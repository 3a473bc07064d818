// File: server/common/net_util.h
//
// Address checks shared by the gateway's start-up configuration and the
// sandbox: is a host a loopback address, and HOST:PORT parsing that insists
// on a host (a bare port would mean every interface).
//
// Loopback is decided on the literal only: 127.0.0.0/8 as a dotted quad,
// ::1 in any IPv6 spelling, and ::ffff:127.x.y.z (IPv4-mapped, what a
// dual-stack socket reports for an IPv4 loopback peer). Host names are never
// resolved here, so a name that some resolver maps to 127.0.0.1 is not
// loopback; only `localhost` is (IsLoopbackHost), because libcurl (7.78 and
// later) answers it with the loopback addresses itself, without DNS.
// Shorthand IPv4 forms that inet_aton would take ("127.1", "2130706433",
// "0x7f.0.0.1") are not IP literals here.
//
// Example:
//   IsLoopbackIpLiteral("127.0.0.1")   // true
//   IsLoopbackIpLiteral("[::1]")       // true
//   IsLoopbackHost("LocalHost")        // true
//   IsLoopbackHost("api.mch.weixin.qq.com")  // false
//
// Thread safety: pure functions.
#ifndef PALMGATE_SERVER_COMMON_NET_UTIL_H_
#define PALMGATE_SERVER_COMMON_NET_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate {

// Returns true when `host` (brackets around IPv6 allowed) is a literal
// loopback IP address as described above.
bool IsLoopbackIpLiteral(absl::string_view host);

// Returns true for IsLoopbackIpLiteral(host) and for "localhost" in any case.
bool IsLoopbackHost(absl::string_view host);

// Returns true when `url` is plain http:// ("http://", any case) to a
// loopback host (IsLoopbackHost): a URL whose traffic must never go through a
// proxy, which would read it in clear text (and whose own loopback is another
// machine's). False for https:// and for an authority holding '@'.
//   IsPlainHttpLoopbackUrl("http://127.0.0.1:8080/v3/x")  // true
//   IsPlainHttpLoopbackUrl("https://127.0.0.1/v3/x")      // false
bool IsPlainHttpLoopbackUrl(absl::string_view url);

// Returns true when `host` (brackets around IPv6 allowed) is an IPv4 dotted
// quad or an IPv6 address literal.
bool IsIpLiteral(absl::string_view host);

struct HostPort {
  std::string host;  // without brackets
  int port = 0;      // 0..65535
  bool ipv6 = false;  // `host` is an IPv6 literal
};

// Parses "HOST:PORT" where HOST is an IPv4 dotted quad or a bracketed IPv6
// literal ("[::1]:9090") and PORT is decimal 0..65535. kInvalidArgument,
// without naming a setting, for a missing host (":9090", "9090"), a host
// name, a bad port or anything else (a list "a:1,b:2", a suffix "9090s").
absl::StatusOr<HostPort> ParseIpHostPort(absl::string_view address);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_NET_UTIL_H_
