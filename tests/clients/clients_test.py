#!/usr/bin/python3
"""Process-level tests of palmgate's clients, contract tooling and packaging.

Each ctest test runs one TestCase class of this file:

    /usr/bin/python3 clients_test.py PalmctlTest

The classes that need a gateway generate sandbox keys, start palmgate-sandbox
(HTTPS, seeded with a user in each state, faults on) and the real palmgate
binary pointed at it, both on port 0, and read their "LISTENING" lines. No
sleeps, no fixed ports; every child is stopped (SIGTERM, exit 0 expected).

Paths come from the environment (set by tests/clients/CMakeLists.txt):
PGT_PALMGATE, PGT_SANDBOX, PGT_PALMCTL, PGT_SOURCE_DIR, PGT_WORK_DIR (scratch
space in the build dir), PGT_TOOLS_DIR (npm tools: buf, dockerfilelint),
PGT_GOOGLEAPIS_DIR, PGT_PROTOC, PGT_GRPC_PYTHON_PLUGIN.

Only the standard library and Debian's python3-grpcio are used. Exit status 77
means every test was skipped (ctest SKIP_RETURN_CODE).
"""

import ctypes
import filecmp
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ENV = os.environ
SOURCE_DIR = ENV.get("PGT_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
WORK_DIR = ENV.get("PGT_WORK_DIR", os.path.join(tempfile.gettempdir(), "palmgate-clients-test"))
TOOLS_DIR = ENV.get("PGT_TOOLS_DIR", os.path.join(WORK_DIR, "tools"))
GOOGLEAPIS_DIR = ENV.get("PGT_GOOGLEAPIS_DIR", "/usr/share/gocode/src/github.com/gogo/googleapis")
PROTOC = ENV.get("PGT_PROTOC", "protoc")
GRPC_PYTHON_PLUGIN = ENV.get("PGT_GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin")
PROTO_FILE = "palmgate/v1/palm_authorization.proto"
STARTUP_TIMEOUT_S = 30
CALL_TIMEOUT_S = 60

# Seeded users: (openid, state, authorize_time, fault). Organization "1004".
ORG = "1004"
USERS = [
    ("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "AUTHORIZATION_STATE_ON", "2024-05-01T10:00:00+08:00", None),
    ("o-off-user", "AUTHORIZATION_STATE_OFF", "2023-12-31T23:59:59+08:00", None),
    ("o-none-user", "AUTHORIZATION_STATE_NONE", None, None),
    ("o-future-state", "AUTHORIZATION_STATE_PAUSED", None, None),  # a state this version does not know
    ("o-rate-limited", "AUTHORIZATION_STATE_ON", None, "status=429"),
]
ON_OPENID = USERS[0][0]
RATE_LIMITED_OPENID = "o-rate-limited"
# (openid, expected state, expected authorize_time in UTC RFC 3339 or "-", expected wechatpay_state)
EXPECTED = [
    (ON_OPENID, "AUTHORIZATION_STATE_ON", "2024-05-01T02:00:00Z", "AUTHORIZATION_STATE_ON"),
    ("o-off-user", "AUTHORIZATION_STATE_OFF", "2023-12-31T15:59:59Z", "AUTHORIZATION_STATE_OFF"),
    ("o-none-user", "AUTHORIZATION_STATE_NONE", "-", "AUTHORIZATION_STATE_NONE"),
    ("o-future-state", "AUTHORIZATION_STATE_UNSPECIFIED", "-", "AUTHORIZATION_STATE_PAUSED"),
]


def need_env(name):
    value = ENV.get(name)
    if not value:
        raise unittest.SkipTest(f"{name} not set (run through ctest)")
    return value


def _die_with_parent():
    # PR_SET_PDEATHSIG: a child outlives no crashed or killed test driver.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


# The secrets-in-logs check (tests/testing/test_logs.h, tests/secrets/scan_test_logs.py): gateway stderr
# and the secret files given to processes go to PALMGATE_TEST_LOG_DIR (set by tests/clients/CMakeLists.txt).
TEST_LOG_DIR = ENV.get("PALMGATE_TEST_LOG_DIR", "")
_log_ids = itertools.count()


def _unique_name():
    return f"clients_test.{os.getpid()}.{next(_log_ids)}"


def collect_log(argv0, text):
    """Saves a process's stderr (str or bytes) as <process>.clients_test.<pid>.<n>.log."""
    if not TEST_LOG_DIR:
        return
    os.makedirs(TEST_LOG_DIR, exist_ok=True)
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    with open(os.path.join(TEST_LOG_DIR, f"{os.path.basename(argv0)}.{_unique_name()}.log"), "wb") as f:
        f.write(data)


def record_secret_files(paths):
    """Copies the existing regular files among paths into secrets/<unique>/."""
    if not TEST_LOG_DIR:
        return
    target = os.path.join(TEST_LOG_DIR, "secrets", _unique_name())
    os.makedirs(target, exist_ok=True)
    for path in paths:
        if os.path.isfile(path):
            shutil.copyfile(path, os.path.join(target, os.path.basename(path)))


def record_secrets_passed(argv, env):
    """Records files given by argument or environment that hold a private key, or whose flag or variable
    name mentions the APIv3 key or a seed (the same rule as tests/testing/test_logs.cc)."""
    if not TEST_LOG_DIR:
        return
    found = []

    def consider(name, value):
        if not value or not os.path.isfile(value) or os.path.getsize(value) >= (1 << 20):
            return
        secret = "apiv3" in name.lower() or "seed" in name.lower()
        if not secret:
            with open(value, "rb") as f:
                secret = b"PRIVATE KEY-----" in f.read()
        if secret:
            found.append(value)

    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("-") and "=" in arg:
            consider(*arg.split("=", 1))
        else:
            consider(argv[i - 1] if argv[i - 1].startswith("-") else "", arg)
    for name, value in (env or {}).items():
        if name.startswith("PALMGATE_"):
            consider(name, value)
    if found:
        record_secret_files(found)


def run(argv, timeout=CALL_TIMEOUT_S, **kwargs):
    """Runs argv to completion; returns CompletedProcess with text stdout/stderr. The gateway's stderr
    is also collected for the secrets-in-logs check."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if argv and argv[0] == ENV.get("PGT_PALMGATE"):
        record_secrets_passed(argv, kwargs.get("env") or ENV)
        collect_log(argv[0], proc.stderr)
    return proc


def describe(proc):
    return f"argv={proc.args}\nexit={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def key_value_lines(text):
    """Parses 'name: value' lines into a dict."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            out[name.strip()] = value
    return out


class Child:
    """A server process whose first stdout line is "LISTENING <address>"."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.argv0 = argv[0]
        self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
        self.collected = False
        record_secrets_passed(argv, env if env is not None else ENV)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env,
                                         preexec_fn=_die_with_parent)
        self.address = self._read_listening_line()

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _read_listening_line(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        fd = self.proc.stdout.fileno()
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
            if not ready:
                self.stop(check=False)
                raise AssertionError(f"{self.name}: no LISTENING line in {STARTUP_TIMEOUT_S}s\n{self.stderr()}")
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self.proc.wait()
                with open(self.stderr_path, "rb") as f:
                    collect_log(self.argv0, f.read())
                self.collected = True
                raise AssertionError(f"{self.name} exited ({code}) before listening:\n{self.stderr()}")
            data += chunk
        line = data.split(b"\n", 1)[0].decode()
        match = re.fullmatch(r"LISTENING (\S+)", line)
        if not match:
            self.stop(check=False)
            raise AssertionError(f"{self.name}: unexpected first line {line!r}")
        return match.group(1)

    def stop(self, check=True):
        """SIGTERM, then waits; with check, asserts exit status 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} ignored SIGTERM for 30s")
        self.proc.stdout.close()
        if not self.collected:
            self.collected = True
            with open(self.stderr_path, "rb") as f:
                collect_log(self.argv0, f.read())
        if check and self.proc.returncode != 0:
            raise AssertionError(f"{self.name} exited {self.proc.returncode} on SIGTERM:\n{self.stderr()}")


class Keys:
    """A sandbox key set (palmgate-sandbox keygen) in a temporary directory."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "keys")
        proc = run([need_env("PGT_SANDBOX"), "keygen", "--out", self.dir])
        if proc.returncode != 0:
            raise AssertionError(describe(proc))
        with open(os.path.join(self.dir, "sandbox.json")) as f:
            self.info = json.load(f)
        record_secret_files([self.path(n) for n in ("apiclient_key.pem", "platform_key.pem", "pub_key_private.pem",
                                                    "ca_key.pem", "tls_key.pem", "apiv3_key.txt")])

    def path(self, name):
        return os.path.join(self.dir, name)

    def gateway_flags(self):
        """The gateway flags for this merchant, verifying with the WeChat Pay public key."""
        return {
            "mchid": self.info["mchid"],
            "merchant_serial": self.info["merchant_serial"],
            "merchant_private_key": self.path("apiclient_key.pem"),
            "wechatpay_public_key": self.path("pub_key.pem"),
            "wechatpay_public_key_id": self.info["public_key_id"],
        }


def flags_argv(flags):
    return [f"--{name}={value}" for name, value in flags.items()]


class GatewayStack:
    """Sandbox (HTTPS, seeded, faults on) plus the real palmgate in front of it."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="palmgate-clients-")
        self.children = []
        try:
            self.keys = Keys(self.tmp)
            seed = os.path.join(self.tmp, "seed.json")
            users = []
            for openid, state, authorize_time, fault in USERS:
                user = {"openid": openid, "organization_id": ORG, "state": state}
                if authorize_time:
                    user["authorize_time"] = authorize_time
                if fault:
                    user["fault"] = fault
                users.append(user)
            with open(seed, "w") as f:
                json.dump({"users": users}, f)
            self.sandbox = self._start("sandbox", [need_env("PGT_SANDBOX"), "serve", "--keys", self.keys.dir, "--tls",
                                                   "--faults", "--seed", seed, "--listen", "127.0.0.1:0"])
            flags = self.keys.gateway_flags()
            flags.update(upstream=self.sandbox.address, upstream_ca=self.keys.path("ca_cert.pem"),
                         listen="127.0.0.1:0")
            self.gateway = self._start("palmgate", [need_env("PGT_PALMGATE")] + flags_argv(flags))
            self.address = self.gateway.address
        except BaseException:
            self.close(check=False)
            raise

    def _start(self, name, argv):
        child = Child(name, argv, self.tmp)
        self.children.append(child)
        return child

    def close(self, check=True):
        errors = []
        for child in reversed(self.children):
            try:
                child.stop(check=check)
            except AssertionError as e:
                errors.append(str(e))
        self.children = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("\n".join(errors))


class StackTestCase(unittest.TestCase):
    """Shares one GatewayStack between the tests of a class."""

    @classmethod
    def setUpClass(cls):
        cls.stack = GatewayStack()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()  # fails the class if a server did not exit 0 on SIGTERM

    def assertRun(self, proc, code=0):
        self.assertEqual(proc.returncode, code, describe(proc))


class PalmctlTest(StackTestCase):
    """(a) palmctl get (text, --json, errors) and palmctl health against the real gateway."""

    def palmctl(self, *args):
        return run([need_env("PGT_PALMCTL")] + list(args))

    def get(self, openid, *extra):
        return self.palmctl("get", "--addr", self.stack.address, "--openid", openid, "--organization_id", ORG,
                            "--timeout", "10s", *extra)

    def test_text_output_for_each_state(self):
        for openid, state, authorize_time, wechatpay_state in EXPECTED:
            with self.subTest(openid=openid):
                proc = self.get(openid)
                self.assertRun(proc)
                fields = key_value_lines(proc.stdout)
                self.assertEqual(fields["state"], state)
                self.assertEqual(fields["authorize_time"], authorize_time)
                self.assertEqual(fields["openid"], openid)
                self.assertEqual(fields["organization_id"], ORG)
                self.assertEqual(fields["wechatpay_state"], wechatpay_state)
                self.assertRegex(fields["request_id"], r"^[0-9A-Fa-f]{48}$")

    def test_json_output_for_each_state(self):
        for openid, state, authorize_time, wechatpay_state in EXPECTED:
            with self.subTest(openid=openid):
                proc = self.get(openid, "--json")
                self.assertRun(proc)
                self.assertEqual(len(proc.stdout.splitlines()), 1, proc.stdout)
                answer = json.loads(proc.stdout)
                self.assertEqual(answer["state"], state)  # enum by name, present even when UNSPECIFIED
                self.assertEqual(answer["openid"], openid)
                self.assertEqual(answer["organizationId"], ORG)
                self.assertEqual(answer["wechatpayState"], wechatpay_state)
                self.assertRegex(answer["wechatpayRequestId"], r"^[0-9A-Fa-f]{48}$")
                if authorize_time == "-":
                    self.assertNotIn("authorizeTime", answer)
                else:
                    self.assertEqual(answer["authorizeTime"], authorize_time)

    def test_empty_openid_prints_invalid_argument_with_bad_request(self):
        proc = self.get("")
        self.assertRun(proc, 1)
        self.assertEqual(proc.stdout, "")
        self.assertRegex(proc.stderr, r"(?m)^error: INVALID_ARGUMENT: .*openid")
        self.assertIn("  reason: INVALID_OPENID\n", proc.stderr)
        self.assertIn("  domain: palmgate.dev\n", proc.stderr)
        self.assertRegex(proc.stderr, r"(?m)^  bad_request: openid: .+")

    def test_rate_limit_prints_error_info_metadata_and_retry_info(self):
        proc = self.get(RATE_LIMITED_OPENID)
        self.assertRun(proc, 1)
        self.assertRegex(proc.stderr, r"(?m)^error: RESOURCE_EXHAUSTED: ")
        self.assertIn("  reason: UPSTREAM_RATE_LIMITED\n", proc.stderr)
        self.assertIn("  metadata.httpStatus: 429\n", proc.stderr)
        self.assertIn("  metadata.wechatpayCode: RATELIMIT_EXCEEDED\n", proc.stderr)
        self.assertRegex(proc.stderr, r"(?m)^  metadata\.requestId: [0-9A-Fa-f]{48}$")
        self.assertRegex(proc.stderr, r"(?m)^  retry_delay: \d+(\.\d+)?s$")

    def test_unreachable_gateway_is_unavailable(self):
        with socket.socket() as s:  # bound, never listening: connections are refused
            s.bind(("127.0.0.1", 0))
            addr = "127.0.0.1:%d" % s.getsockname()[1]
            proc = self.palmctl("get", "--addr", addr, "--openid", ON_OPENID, "--organization_id", ORG)
        self.assertRun(proc, 1)
        self.assertRegex(proc.stderr, r"^error: UNAVAILABLE: ")

    def test_health(self):
        for service in (None, "palmgate.v1.PalmAuthorization"):
            with self.subTest(service=service):
                args = ["health", "--addr", self.stack.address] + (["--service", service] if service else [])
                proc = self.palmctl(*args)
                self.assertRun(proc)
                self.assertEqual(proc.stdout, "SERVING\n")
        proc = self.palmctl("health", "--addr", self.stack.address, "--service", "no.such.Service")
        self.assertRun(proc, 1)
        self.assertRegex(proc.stderr, r"^error: NOT_FOUND: ")

    def test_usage_errors_exit_2(self):
        cases = [
            [],
            ["frobnicate"],
            ["get", "--addr", self.stack.address, "--organization_id", ORG],
            ["get", "--addr", self.stack.address, "--openid", "x", "--organization_id", ORG, "--timeout", "soon"],
            ["get", "--addr", self.stack.address, "--openid", "x", "--organization_id", ORG, "--colour"],
            ["health", "--addr"],
        ]
        for args in cases:
            with self.subTest(args=args):
                proc = self.palmctl(*args)
                self.assertRun(proc, 2)
                self.assertIn("usage:", proc.stderr)


class PythonExampleTest(StackTestCase):
    """(b) client/examples/python/get_authorization.py with stubs generated by protoc."""

    @classmethod
    def setUpClass(cls):
        cls.gen = tempfile.mkdtemp(prefix="palmgate-pystubs-")
        proc = run([PROTOC, "-I", os.path.join(SOURCE_DIR, "proto"), "-I", GOOGLEAPIS_DIR, "-I", "/usr/include",
                    f"--python_out={cls.gen}", f"--grpc_python_out={cls.gen}",
                    f"--plugin=protoc-gen-grpc_python={GRPC_PYTHON_PLUGIN}", PROTO_FILE,
                    "google/api/annotations.proto", "google/api/http.proto", "google/rpc/status.proto",
                    "google/rpc/error_details.proto"])
        if proc.returncode != 0:
            raise AssertionError(describe(proc))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.gen, ignore_errors=True)
        super().tearDownClass()

    def example(self, openid):
        script = os.path.join(SOURCE_DIR, "client/examples/python/get_authorization.py")
        return run([sys.executable, script, "--addr", self.stack.address, "--openid", openid,
                    "--organization_id", ORG, "--timeout", "10"], env=dict(ENV, PYTHONPATH=self.gen))

    def test_prints_authorization(self):
        proc = self.example(ON_OPENID)
        self.assertRun(proc)
        fields = key_value_lines(proc.stdout)
        self.assertEqual(fields["state"], "AUTHORIZATION_STATE_ON")
        self.assertEqual(fields["authorize_time"], "2024-05-01T02:00:00Z")
        self.assertEqual(fields["openid"], ON_OPENID)
        self.assertRegex(fields["request_id"], r"^[0-9A-Fa-f]{48}$")

    def test_decodes_error_details_from_trailers(self):
        proc = self.example("")
        self.assertRun(proc, 1)
        self.assertRegex(proc.stderr, r"(?m)^error: INVALID_ARGUMENT: ")
        self.assertIn("  reason: INVALID_OPENID\n  domain: palmgate.dev\n", proc.stderr)
        self.assertRegex(proc.stderr, r"(?m)^  bad_request: openid: .+")
        proc = self.example(RATE_LIMITED_OPENID)
        self.assertRun(proc, 1)
        self.assertIn("  reason: UPSTREAM_RATE_LIMITED\n", proc.stderr)
        self.assertIn("  metadata.httpStatus: 429\n", proc.stderr)
        self.assertRegex(proc.stderr, r"(?m)^  retry_delay: \d+(\.\d+)?s$")


class NodeExampleTest(StackTestCase):
    """(c) client/examples/node/get_authorization.js with @grpc/grpc-js + @grpc/proto-loader."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("node") is None or shutil.which("npm") is None:
            if ENV.get("CI"):
                raise AssertionError("node/npm missing in CI: scripts/setup should have installed them")
            raise unittest.SkipTest("node/npm not installed (scripts/setup installs Debian's nodejs and npm)")
        # npm install into a build-dir copy of the example; reinstall only when package.json changes.
        cls.dir = os.path.join(WORK_DIR, "node-example")
        os.makedirs(cls.dir, exist_ok=True)
        src = os.path.join(SOURCE_DIR, "client/examples/node")
        stale = not filecmp.cmp(os.path.join(src, "package.json"), os.path.join(cls.dir, "package.json"),
                                shallow=False) if os.path.exists(os.path.join(cls.dir, "package.json")) else True
        for name in ("package.json", "get_authorization.js"):
            shutil.copyfile(os.path.join(src, name), os.path.join(cls.dir, name))
        if stale or not os.path.isdir(os.path.join(cls.dir, "node_modules", "@grpc", "grpc-js")):
            proc = run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cls.dir, timeout=600)
            if proc.returncode != 0:
                raise AssertionError(describe(proc))
        super().setUpClass()

    def example(self, openid):
        return run(["node", os.path.join(self.dir, "get_authorization.js"), "--addr", self.stack.address,
                    "--openid", openid, "--organization_id", ORG, "--timeout_ms", "10000",
                    "--proto_dir", os.path.join(SOURCE_DIR, "proto"), "--googleapis_dir", GOOGLEAPIS_DIR])

    def test_prints_authorization(self):
        proc = self.example(ON_OPENID)
        self.assertRun(proc)
        fields = key_value_lines(proc.stdout)
        self.assertEqual(fields["state"], "AUTHORIZATION_STATE_ON")
        self.assertEqual(fields["authorize_time"], "2024-05-01T02:00:00.000Z")
        self.assertEqual(fields["organization_id"], ORG)
        self.assertRegex(fields["request_id"], r"^[0-9A-Fa-f]{48}$")

    def test_decodes_error_details_from_trailers(self):
        proc = self.example("")
        self.assertRun(proc, 1)
        self.assertRegex(proc.stderr, r"(?m)^error: INVALID_ARGUMENT: ")
        self.assertIn("  reason: INVALID_OPENID\n  domain: palmgate.dev\n", proc.stderr)
        self.assertRegex(proc.stderr, r"(?m)^  bad_request: openid: .+")
        proc = self.example(RATE_LIMITED_OPENID)
        self.assertRun(proc, 1)
        self.assertIn("  reason: UPSTREAM_RATE_LIMITED\n", proc.stderr)
        self.assertRegex(proc.stderr, r"(?m)^  retry_delay: \d+s$")


def buf():
    path = os.path.join(TOOLS_DIR, "node_modules", ".bin", "buf")
    if not os.path.exists(path):
        raise AssertionError(f"{path} missing: the clients_npm_tools fixture installs it")
    return path


def buf_env():
    return dict(ENV, BUF_CACHE_DIR=os.path.join(WORK_DIR, "buf-cache"))


class BufCurlTest(StackTestCase):
    """(d) buf curl through server reflection: list services, GetAuthorization, Health/Check."""

    def curl(self, *args):
        return run([buf(), "curl", "--protocol", "grpc", "--http2-prior-knowledge"] + list(args), env=buf_env())

    def url(self, method=""):
        return f"http://{self.stack.address}/{method}"

    def test_list_services(self):
        proc = self.curl("--list-services", self.url())
        self.assertRun(proc)
        services = proc.stdout.split()
        self.assertIn("palmgate.v1.PalmAuthorization", services)
        self.assertIn("grpc.health.v1.Health", services)

    def test_get_authorization(self):
        proc = self.curl(self.url("palmgate.v1.PalmAuthorization/GetAuthorization"),
                         "-d", json.dumps({"openid": ON_OPENID, "organization_id": ORG}))
        self.assertRun(proc)
        answer = json.loads(proc.stdout)
        self.assertEqual(answer["state"], "AUTHORIZATION_STATE_ON")
        self.assertEqual(answer["authorizeTime"], "2024-05-01T02:00:00Z")
        self.assertEqual(answer["openid"], ON_OPENID)

    def test_invalid_argument_exit_code(self):
        proc = self.curl(self.url("palmgate.v1.PalmAuthorization/GetAuthorization"),
                         "-d", json.dumps({"openid": "", "organization_id": ORG}))
        self.assertRun(proc, 3 * 8)  # buf curl exits with gRPC code × 8
        self.assertIn("invalid_argument", proc.stderr)

    def test_health_check(self):
        proc = self.curl(self.url("grpc.health.v1.Health/Check"), "-d", "{}")
        self.assertRun(proc)
        self.assertEqual(json.loads(proc.stdout), {"status": "SERVING"})


class BufLintTest(unittest.TestCase):
    """(e) buf lint of the contract with proto/buf.yaml, on a protoc-built image (offline imports)."""

    def image(self, proto_root, out):
        proc = run([PROTOC, "-I", proto_root, "-I", GOOGLEAPIS_DIR, "-I", "/usr/include", "--include_imports",
                    "--include_source_info", f"--descriptor_set_out={out}", PROTO_FILE])
        self.assertEqual(proc.returncode, 0, describe(proc))
        return out

    def lint(self, image):
        return run([buf(), "lint", image, "--config", os.path.join(SOURCE_DIR, "proto/buf.yaml")], env=buf_env())

    def test_contract_is_lint_clean(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc = self.lint(self.image(os.path.join(SOURCE_DIR, "proto"), os.path.join(tmp, "img.binpb")))
            self.assertEqual(proc.returncode, 0, describe(proc))
            self.assertEqual(proc.stdout + proc.stderr, "")

    def test_lint_sees_the_contract(self):
        # The same check on a copy with a lint error must fail: proves the lint covers our file
        # (and that `ignore: [google]` excludes only the stock protos).
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "proto")
            os.makedirs(os.path.join(root, "palmgate/v1"))
            with open(os.path.join(SOURCE_DIR, "proto", PROTO_FILE)) as f:
                text = f.read()
            broken = text.replace("string organization_id = 2;", "string organizationId = 2;", 1)
            self.assertNotEqual(broken, text)
            with open(os.path.join(root, PROTO_FILE), "w") as f:
                f.write(broken)
            proc = self.lint(self.image(root, os.path.join(tmp, "img.binpb")))
            self.assertNotEqual(proc.returncode, 0, describe(proc))
            self.assertIn("organizationId", proc.stdout)
            self.assertNotIn("google/", proc.stdout)

    def test_contract_is_buf_formatted(self):
        proc = run([buf(), "format", "--diff", "--exit-code", os.path.join(SOURCE_DIR, "proto", PROTO_FILE)],
                   env=buf_env())
        self.assertEqual(proc.returncode, 0, describe(proc))


class GatewayStartupTest(unittest.TestCase):
    """(f) palmgate refuses a bad configuration with one line naming the setting, and reads PALMGATE_* env."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="palmgate-startup-")
        cls.keys = Keys(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assertRefused(self, flags, setting):
        argv = [need_env("PGT_PALMGATE"), "--listen=127.0.0.1:0"] + flags_argv(flags)
        proc = run(argv, timeout=STARTUP_TIMEOUT_S)
        self.assertNotEqual(proc.returncode, 0, describe(proc))
        self.assertEqual(proc.stdout, "", "must not report LISTENING")
        lines = proc.stderr.splitlines()
        self.assertEqual(len(lines), 1, describe(proc))
        self.assertIn(f"--{setting}", lines[0])

    def test_missing_mchid(self):
        flags = self.keys.gateway_flags()
        del flags["mchid"]
        self.assertRefused(flags, "mchid")

    def test_platform_certificate_is_the_merchant_certificate(self):
        flags = self.keys.gateway_flags()
        del flags["wechatpay_public_key"], flags["wechatpay_public_key_id"]
        flags["platform_certificates"] = self.keys.path("apiclient_cert.pem")
        self.assertRefused(flags, "platform_certificates")

    def test_no_verification_key(self):
        flags = self.keys.gateway_flags()
        del flags["wechatpay_public_key"], flags["wechatpay_public_key_id"]
        self.assertRefused(flags, "wechatpay_public_key")

    def test_public_key_without_id(self):
        flags = self.keys.gateway_flags()
        del flags["wechatpay_public_key_id"]
        self.assertRefused(flags, "wechatpay_public_key_id")

    def test_health_not_serving_while_draining(self):
        flags = self.keys.gateway_flags()
        flags.update(listen="127.0.0.1:0", drain_delay="3s")
        gateway = Child("palmgate-drain", [need_env("PGT_PALMGATE")] + flags_argv(flags), self.tmp)
        try:
            health = [need_env("PGT_PALMCTL"), "health", "--addr", gateway.address]
            self.assertEqual(run(health).stdout, "SERVING\n")
            gateway.proc.send_signal(signal.SIGTERM)
            for _ in range(100):  # bounded polling: the flip follows the signal within milliseconds
                proc = run(health)
                if proc.returncode != 0:
                    break
            self.assertEqual(proc.returncode, 1, describe(proc))
            self.assertEqual(proc.stdout, "NOT_SERVING\n")
        finally:
            gateway.stop()

    def test_configured_by_environment_serves(self):
        env = {k: v for k, v in ENV.items() if not k.startswith("PALMGATE_")}
        for name, value in self.keys.gateway_flags().items():
            env[f"PALMGATE_{name.upper()}"] = value
        env["PALMGATE_LISTEN"] = "127.0.0.1:0"
        gateway = Child("palmgate-env", [need_env("PGT_PALMGATE")], self.tmp, env=env)
        try:
            proc = run([need_env("PGT_PALMCTL"), "health", "--addr", gateway.address])
            self.assertEqual(proc.returncode, 0, describe(proc))
            self.assertEqual(proc.stdout, "SERVING\n")
        finally:
            gateway.stop()


class PackagingTest(unittest.TestCase):
    """(4) Dockerfile and docker-compose.yml are valid offline."""

    def test_compose_file_is_valid(self):
        compose = shutil.which("docker-compose")
        if compose is None:
            self.fail("docker-compose missing: scripts/setup installs it (apt, --no-install-recommends)")
        proc = run([compose, "-f", "docker-compose.yml", "config", "-q"], cwd=SOURCE_DIR)
        self.assertEqual(proc.returncode, 0, describe(proc))
        proc = run([compose, "-f", "docker-compose.yml", "config", "--services"], cwd=SOURCE_DIR)
        self.assertEqual(proc.returncode, 0, describe(proc))
        self.assertEqual(sorted(proc.stdout.split()), ["gateway-1", "gateway-2", "keygen", "lb", "sandbox"])

    def test_compose_balancer_and_health_checks(self):
        import yaml  # python3-yaml: a dependency of Debian's docker-compose
        proc = run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=SOURCE_DIR)
        self.assertEqual(proc.returncode, 0, describe(proc))
        services = yaml.safe_load(proc.stdout)["services"]
        template_path = os.path.join(SOURCE_DIR, "deploy", "nginx", "palmgate.conf.template")
        with open(template_path) as f:
            template = f.read()
        gateways = ["gateway-1", "gateway-2"]
        listens = []
        for name in gateways:
            gateway = services[name]
            listen = gateway["environment"]["PALMGATE_LISTEN"]
            listens.append(listen)
            # The image's HEALTHCHECK asks port 50051; each replica's own check asks its own port.
            self.assertEqual(gateway["healthcheck"]["test"],
                             ["CMD", "palmctl", "health", "--addr", listen, "--timeout", "3s"])
            # Drain for nginx: refuse connections at once, serve established ones longer than nginx
            # may keep a connection it could start a request on.
            self.assertEqual(str(gateway["environment"]["PALMGATE_DRAIN_REFUSE_CONNECTIONS"]), "true")
            keep = [float(re.search(rf"(?m)^\s*{d}\s+(\d+)s;", template).group(1))
                    for d in ("keepalive_time", "keepalive_timeout")]
            drain = re.fullmatch(r"(\d+)s", gateway["environment"]["PALMGATE_DRAIN_DELAY"])
            self.assertIsNotNone(drain)
            self.assertGreater(float(drain.group(1)), sum(keep))
            self.assertEqual(gateway["stop_signal"], "SIGTERM")
        self.assertEqual(len(set(listens)), 2)
        lb = services["lb"]
        self.assertRegex(lb["image"], r"^nginx:")
        for name in gateways:
            self.assertEqual(lb["depends_on"][name]["condition"], "service_healthy")
        self.assertIn("test", lb["healthcheck"])
        # The balancer runs the same template as the drain test, filled from its environment.
        mounted = [str(v).split(":/etc/nginx/templates/")[0] for v in lb["volumes"]
                   if ":/etc/nginx/templates/" in str(v)]
        self.assertEqual([os.path.realpath(m) for m in mounted], [os.path.realpath(template_path)], lb["volumes"])
        variables = set(re.findall(r"\$\{(\w+)\}", template))
        self.assertEqual(variables, {"PALMGATE_LB_LISTEN", "PALMGATE_REPLICA_1", "PALMGATE_REPLICA_2"})
        self.assertLessEqual(variables, set(lb["environment"]))
        self.assertEqual(sorted([lb["environment"]["PALMGATE_REPLICA_1"], lb["environment"]["PALMGATE_REPLICA_2"]]),
                         sorted(listens))
        lb_port = lb["environment"]["PALMGATE_LB_LISTEN"].rsplit(":", 1)[1]
        # compose 1.29 prints short port syntax as "host_ip:published:target/tcp".
        self.assertIn(f"127.0.0.1:50051:{lb_port}/tcp", [str(p) for p in services["sandbox"]["ports"]])

    def test_compose_configures_gateway_by_environment(self):
        with open(os.path.join(SOURCE_DIR, "docker-compose.yml")) as f:
            text = f.read()
        # Every required gateway setting comes from PALMGATE_* and a mounted key file.
        for name in ("MCHID", "MERCHANT_SERIAL", "MERCHANT_PRIVATE_KEY", "WECHATPAY_PUBLIC_KEY",
                     "WECHATPAY_PUBLIC_KEY_ID", "UPSTREAM", "UPSTREAM_CA", "LISTEN"):
            self.assertRegex(text, rf"PALMGATE_{name}\b")

    def test_compose_services_run_locally(self):
        # No Docker engine here: run each service's command as compose resolves it, on this machine,
        # with the `keys` volume as a temp dir and ports 0. Checks the keygen script, the PALMGATE_*
        # wiring and file names, and the TLS name the gateway uses for the sandbox.
        import yaml  # python3-yaml: a dependency of Debian's docker-compose
        proc = run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=SOURCE_DIR)
        self.assertEqual(proc.returncode, 0, describe(proc))
        services = yaml.safe_load(proc.stdout)["services"]
        mount = "/var/lib/palmgate/keys"
        with tempfile.TemporaryDirectory() as tmp:
            keys, bin_dir = os.path.join(tmp, "keys"), os.path.join(tmp, "bin")
            os.makedirs(keys)
            os.makedirs(bin_dir)
            for var, name in (("PGT_PALMGATE", "palmgate"), ("PGT_SANDBOX", "palmgate-sandbox"),
                              ("PGT_PALMCTL", "palmctl")):
                os.symlink(need_env(var), os.path.join(bin_dir, name))
            env = {k: v for k, v in ENV.items() if not k.startswith("PALMGATE_")}
            env["PATH"] = bin_dir + os.pathsep + env["PATH"]

            def argv(service):  # as the container would run it: `$$` is compose's escape for `$`
                return [a.replace(mount, keys).replace("$$", "$") for a in services[service]["command"]]

            for volume in (services["gateway-1"]["volumes"] + services["gateway-2"]["volumes"] +
                           services["sandbox"]["volumes"]):
                self.assertIn(mount, str(volume))
            proc = run(argv("keygen"), env=env)
            self.assertEqual(proc.returncode, 0, describe(proc))
            proc = run(argv("keygen"), env=env)  # idempotent: a second run keeps the key set
            self.assertEqual(proc.returncode, 0, describe(proc))
            with open(os.path.join(keys, "gateway.env")) as f:
                self.assertRegex(f.read(), r"^PALMGATE_MERCHANT_SERIAL=[0-9A-Fa-f]{40}\nPALMGATE_WECHATPAY_PUBLIC_KEY_ID="
                                           r"PUB_KEY_ID_\d+\n$")
            sandbox_argv = [a if not a.startswith("--listen=") else "--listen=127.0.0.1:0" for a in argv("sandbox")]
            sandbox = Child("compose-sandbox", sandbox_argv, tmp, env=env)
            gateways = []
            try:
                port = sandbox.address.rsplit(":", 1)[1]
                for name in ("gateway-1", "gateway-2"):
                    gw_env = dict(env)
                    for key, value in services[name]["environment"].items():
                        gw_env[key] = str(value).replace(mount, keys)
                    self.assertEqual(gw_env["PALMGATE_UPSTREAM"], "https://localhost:8443")
                    gw_env["PALMGATE_UPSTREAM"] = f"https://localhost:{port}"
                    gw_env["PALMGATE_LISTEN"] = "127.0.0.1:0"
                    gateway = Child("compose-" + name, argv(name), tmp, env=gw_env)
                    gateways.append(gateway)
                    proc = run([need_env("PGT_PALMCTL"), "get", "--addr", gateway.address, "--openid", "o-compose",
                                "--organization_id", ORG, "--timeout", "10s"])
                    self.assertEqual(proc.returncode, 0, describe(proc))
                    self.assertEqual(key_value_lines(proc.stdout)["state"], "AUTHORIZATION_STATE_NONE")
            finally:
                for gateway in gateways:
                    gateway.stop()
                sandbox.stop()

    def test_dockerfile_lints_clean(self):
        lint = os.path.join(TOOLS_DIR, "node_modules", ".bin", "dockerfilelint")
        self.assertTrue(os.path.exists(lint), f"{lint} missing: the clients_npm_tools fixture installs it")
        proc = run([lint, "Dockerfile"], cwd=SOURCE_DIR)
        self.assertEqual(proc.returncode, 0, describe(proc))

    def test_dockerfile_shape(self):
        with open(os.path.join(SOURCE_DIR, "Dockerfile")) as f:
            text = f.read().replace("\\\n", " ")  # join continuation lines
        stages = re.findall(r"(?m)^FROM\s+(\S+)", text)
        self.assertEqual(stages[0].split()[0], "debian:12")
        self.assertEqual(stages[-1], "debian:12-slim")
        users = re.findall(r"(?m)^USER\s+(\S+)", text)
        self.assertTrue(users and users[-1] not in ("root", "0"), "runtime stage must run as non-root")
        self.assertRegex(text, r"(?m)^HEALTHCHECK .*\bpalmctl\W+health\b")
        for binary in ("palmgate", "palmgate-sandbox", "palmctl"):
            self.assertRegex(text, rf"(?m)^COPY --from=\S+ \S+/{binary} /usr/local/bin/")


def install_tools(package_json):
    """npm install of package_json into TOOLS_DIR, unless the installed copy is current."""
    os.makedirs(TOOLS_DIR, exist_ok=True)
    installed = os.path.join(TOOLS_DIR, "package.json")
    current = (os.path.exists(installed) and filecmp.cmp(package_json, installed, shallow=False)
               and os.path.exists(os.path.join(TOOLS_DIR, "node_modules", ".bin", "buf")))
    if current:
        print(f"npm tools in {TOOLS_DIR} are current")
    else:
        shutil.copyfile(package_json, installed)
        proc = run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TOOLS_DIR, timeout=600)
        print(describe(proc))
        if proc.returncode != 0:
            return 1
    for tool in ("buf", "dockerfilelint"):
        proc = run([os.path.join(TOOLS_DIR, "node_modules", ".bin", tool), "--version"])
        print(f"{tool} {proc.stdout.strip()}")
        if proc.returncode != 0:
            print(describe(proc))
            return 1
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--install-tools":
        return install_tools(sys.argv[2])
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    os.makedirs(WORK_DIR, exist_ok=True)
    suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:], sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.skipped and result.testsRun <= len(result.skipped):
        return 77  # everything skipped (a skip in setUpClass counts as one skip, zero tests run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
