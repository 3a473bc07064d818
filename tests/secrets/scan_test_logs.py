#!/usr/bin/env python3
"""Scans the logs of a whole test run for secrets: private keys, APIv3 keys, Authorization header values
and clear openids. scripts/test (and scripts/asan) run it after ctest; it exits 1 on any finding.

What is scanned (tests/testing/test_logs.h describes the collection):
  LOG_DIR/<process>.<producer>.<pid>.<n>.log   stderr of every process the tests started
      palmgate.*          the gateway: every rule below
      anything else       (palmgate-sandbox, the CONNECT proxy, ...): private keys and APIv3 keys only
                          (the sandbox plays WeChat Pay: it sees Authorization headers and openids)
  --ctest-log FILE (ctest's Testing/Temporary/LastTest.log: the in-process gateways of service_test,
      certificate_rotation_test, ... log to the test binaries' stderr)
      palmgate JSON log lines ({"time":...,"level":...})   every rule
      every other line                                   private keys, APIv3 keys, Authorization values

What is searched for:
  private keys   the PEM private-key banner; and every 32-character piece (at 32-character steps) of the
                 Base64 body of every private key the run knew: tests/testdata (--testdata), and the keys
                 recorded under LOG_DIR/secrets/ (sandbox keygen key sets, key files given to processes).
                 Any leaked excerpt of 63 or more Base64 characters contains such a piece, PEM-wrapped or not.
  APIv3 keys     the contents of every recorded *apiv3* file
  Authorization  "WECHATPAY2-SHA256-RSA2048 <param>=", signature="<Base64>", an Authorization header line
                 or JSON member with a value
  openids        every openid of a recorded seed file (users[].openid), and every openid literal in the
                 test sources (--sources: quoted "o-..." strings and oUpF8u... ids), as whole tokens

Findings name the file, line and rule, never the secret. Exit codes: 0 clean, 1 findings, 2 unusable input
(no LOG_DIR, or fewer gateway logs than --min-gateway-logs: a scan of nothing must not pass).

Usage: scan_test_logs.py --log-dir DIR [--ctest-log FILE] [--testdata DIR] [--sources PATH...]
                         [--min-gateway-logs N]
"""

import argparse
import json
import os
import re
import sys

PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(.*?)-----END \1-----", re.S)
PRIVATE_BANNER = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
B64_RUN = re.compile(r"[A-Za-z0-9+/]{32,}")
TOKEN = re.compile(r"[A-Za-z0-9_-]+")
AUTHORIZATION = [
    re.compile(r"WECHATPAY2-SHA256-RSA2048\s+(mchid|nonce_str|timestamp|serial_no|signature)\s*="),
    re.compile(r"signature\s*=\s*\\?\"[A-Za-z0-9+/]{40,}"),
    re.compile(r"(?im)^\s*authorization\s*:\s*\S"),
    re.compile(r"(?i)\"authorization\"\s*:\s*\"[^\"]"),
]
OPENID_LITERAL = re.compile(r"[\"'](o-[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)[\"']|(?<![A-Za-z0-9_-])(oUpF8u[A-Za-z0-9_-]{10,})")
GATEWAY_LOG_LINE = re.compile(r'^\{"time":"[^"]*","level":"')
CHUNK = 32


class Secrets:
    def __init__(self):
        self.key_chunks = {}      # 32-char Base64 piece -> where the key came from
        self.apiv3 = {}           # APIv3 key -> where from
        self.openids = {}         # openid -> where from

    def add_pem_text(self, text, origin):
        for m in PEM_BLOCK.finditer(text):
            body = "".join(line.strip() for line in m.group(2).splitlines()
                           if line.strip() and ":" not in line)  # skip Proc-Type/DEK-Info headers
            for i in range(0, len(body) - CHUNK + 1, CHUNK):
                self.key_chunks[body[i:i + CHUNK]] = origin
            if len(body) >= CHUNK:
                self.key_chunks[body[-CHUNK:]] = origin

    def add_file(self, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return
        text = data.decode("utf-8", "replace")
        name = os.path.basename(path).lower()
        if "PRIVATE KEY-----" in text:
            self.add_pem_text(text, path)
        elif "apiv3" in name:
            key = text.strip()
            if len(key) >= 16:
                self.apiv3[key] = path
        elif name.endswith(".json"):
            try:
                doc = json.loads(text)
            except ValueError:
                return
            users = doc.get("users", []) if isinstance(doc, dict) else []
            for user in users if isinstance(users, list) else []:
                openid = user.get("openid") if isinstance(user, dict) else None
                if isinstance(openid, str) and len(openid) >= 3:
                    self.openids[openid] = path

    def add_tree(self, root):
        for dirpath, _, files in os.walk(root):
            for f in files:
                self.add_file(os.path.join(dirpath, f))

    def add_source_literals(self, path):
        paths = [path]
        if os.path.isdir(path):
            paths = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                     if f.endswith((".cc", ".h", ".py", ".sh")) or "." not in f]
        for p in paths:
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            for m in OPENID_LITERAL.finditer(text):
                openid = m.group(1) or m.group(2)
                self.openids[openid] = p


def redact(secret):
    """At most a quarter of the secret (and at most 4 characters) is shown."""
    return f"{secret[:min(4, len(secret) // 4)]}…({len(secret)} chars)"


def scan_text(text, secrets, rules, where, findings):
    """Appends (where, line, rule, detail) for every hit in text. rules: subset of {keys, apiv3, auth, openid}."""
    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    if "keys" in rules:
        for m in PRIVATE_BANNER.finditer(text):
            findings.append((where, line_of(m.start()), "private key banner", m.group(0)[:16] + "…"))
        for m in B64_RUN.finditer(text):
            run = m.group(0)
            for i in range(len(run) - CHUNK + 1):
                origin = secrets.key_chunks.get(run[i:i + CHUNK])
                if origin:
                    findings.append((where, line_of(m.start() + i), "private key material",
                                     f"{redact(run[i:i + CHUNK])} of {origin}"))
                    break
    if "apiv3" in rules:
        for key, origin in secrets.apiv3.items():
            pos = text.find(key)
            if pos >= 0:
                findings.append((where, line_of(pos), "APIv3 key", f"{redact(key)} from {origin}"))
    if "auth" in rules:
        for pattern in AUTHORIZATION:
            for m in pattern.finditer(text):
                findings.append((where, line_of(m.start()), "Authorization header value", m.group(0)[:28] + "…"))
    if "openid" in rules and secrets.openids:
        for m in TOKEN.finditer(text):
            origin = secrets.openids.get(m.group(0))
            if origin:
                findings.append((where, line_of(m.start()), "clear openid", f"{redact(m.group(0))} from {origin}"))


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ctest-log")
    parser.add_argument("--testdata")
    parser.add_argument("--sources", nargs="*", default=[])
    parser.add_argument("--min-gateway-logs", type=int, default=1)
    args = parser.parse_args(argv)

    if not os.path.isdir(args.log_dir):
        print(f"scan_test_logs: no log directory {args.log_dir}", file=sys.stderr)
        return 2
    secrets = Secrets()
    if args.testdata:
        secrets.add_tree(args.testdata)
    secrets.add_tree(os.path.join(args.log_dir, "secrets"))
    for s in args.sources:
        secrets.add_source_literals(s)

    findings = []
    gateway_logs = other_logs = 0
    for name in sorted(os.listdir(args.log_dir)):
        path = os.path.join(args.log_dir, name)
        if not name.endswith(".log") or not os.path.isfile(path):
            continue
        if name.startswith("palmgate."):
            gateway_logs += 1
            scan_text(read(path), secrets, {"keys", "apiv3", "auth", "openid"}, path, findings)
        else:
            other_logs += 1
            scan_text(read(path), secrets, {"keys", "apiv3"}, path, findings)
    ctest_lines = 0
    if args.ctest_log:
        if not os.path.isfile(args.ctest_log):
            print(f"scan_test_logs: no ctest log {args.ctest_log}", file=sys.stderr)
            return 2
        text = read(args.ctest_log)
        scan_text(text, secrets, {"keys", "apiv3", "auth"}, args.ctest_log, findings)
        lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if GATEWAY_LOG_LINE.match(line)]
        ctest_lines = len(lines)
        sub = []
        scan_text("\n".join(line for _, line in lines), secrets, {"openid"}, args.ctest_log, sub)
        # Line numbers of the joined gateway lines back to the ctest log's own.
        findings.extend((w, lines[n - 1][0], rule, detail) for w, n, rule, detail in sub)

    print(f"scan_test_logs: {gateway_logs} gateway logs, {other_logs} other process logs, "
          f"{ctest_lines} in-process gateway log lines; looked for {len(secrets.key_chunks)} private-key pieces, "
          f"{len(secrets.apiv3)} APIv3 keys, {len(secrets.openids)} openids")
    if gateway_logs < args.min_gateway_logs:
        print(f"scan_test_logs: only {gateway_logs} gateway logs (want at least {args.min_gateway_logs}): "
              "was the collection off?", file=sys.stderr)
        return 2
    for where, line, rule, detail in findings:
        print(f"{where}:{line}: {rule}: {detail}")
    if findings:
        print(f"scan_test_logs: FAILED: {len(findings)} secret(s) in logs", file=sys.stderr)
        return 1
    print("scan_test_logs: no secret found")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
