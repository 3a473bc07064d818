#include "server/common/net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace palmgate {
namespace {

absl::string_view StripBrackets(absl::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

// inet_pton needs a NUL-terminated string; an embedded NUL is never an address.
bool ParseV4(absl::string_view host, in_addr* out) {
  if (host.empty() || host.size() >= INET_ADDRSTRLEN || host.find('\0') != absl::string_view::npos) return false;
  const std::string s(host);
  return ::inet_pton(AF_INET, s.c_str(), out) == 1;
}

bool ParseV6(absl::string_view host, in6_addr* out) {
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN || host.find('\0') != absl::string_view::npos) return false;
  const std::string s(host);
  return ::inet_pton(AF_INET6, s.c_str(), out) == 1;
}

bool IsLoopbackV4(const in_addr& a) { return (ntohl(a.s_addr) >> 24) == 127; }

}  // namespace

bool IsLoopbackIpLiteral(absl::string_view host) {
  in_addr v4;
  if (ParseV4(host, &v4)) return IsLoopbackV4(v4);
  in6_addr v6;
  if (!ParseV6(StripBrackets(host), &v6)) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    in_addr mapped;
    std::memcpy(&mapped.s_addr, &v6.s6_addr[12], 4);
    return IsLoopbackV4(mapped);
  }
  return false;
}

bool IsLoopbackHost(absl::string_view host) {
  return IsLoopbackIpLiteral(host) || absl::EqualsIgnoreCase(host, "localhost");
}

bool IsPlainHttpLoopbackUrl(absl::string_view url) {
  constexpr absl::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || !absl::EqualsIgnoreCase(url.substr(0, kScheme.size()), kScheme)) return false;
  url.remove_prefix(kScheme.size());
  absl::string_view host = url.substr(0, url.find_first_of("/?#"));
  if (host.find('@') != absl::string_view::npos) return false;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(0, host.find(']') == absl::string_view::npos ? host.size() : host.find(']') + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  return IsLoopbackHost(host);
}

bool IsIpLiteral(absl::string_view host) {
  in_addr v4;
  in6_addr v6;
  return ParseV4(host, &v4) || ParseV6(StripBrackets(host), &v6);
}

absl::StatusOr<HostPort> ParseIpHostPort(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" has no host: write HOST:PORT (127.0.0.1:9090, [::1]:9090, 0.0.0.0:9090)"));
  }
  HostPort out;
  const absl::string_view host = address.substr(0, colon);
  const absl::string_view port = address.substr(colon + 1);
  in_addr v4;
  in6_addr v6;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']' && ParseV6(StripBrackets(host), &v6)) {
    out.host = std::string(StripBrackets(host));
    out.ipv6 = true;
  } else if (ParseV4(host, &v4)) {
    out.host = std::string(host);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "host of \"", address, "\" must be an IPv4 address or a bracketed IPv6 address ([::1])"));
  }
  if (port.empty() || port.size() > 5 || !absl::c_all_of(port, absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &out.port) || out.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", address, "\" (0..65535)"));
  }
  return out;
}

}  // namespace palmgate
