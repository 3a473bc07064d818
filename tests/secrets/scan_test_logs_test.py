#!/usr/bin/env python3
"""Unit tests of scan_test_logs.py: clean logs pass; each kind of planted secret fails the scan and is
reported without the secret itself."""

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scan_test_logs  # noqa: E402

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata")
APIV3 = "Zq3vTn8Kx2Lw5Rb7Yc1Md4Pf6Hg9Js0A"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
CLEAN_GATEWAY = ('{"time":"2025-05-20T08:00:00.123Z","level":"info","message":"rpc",'
                 '"method":"/palmgate.v1.PalmAuthorization/GetAuthorization","code":0,"openid_tag":"9f2c41d0"}\n')


class ScanTestLogsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="scan-test-logs-")
        secrets = os.path.join(self.dir, "secrets", "keyset.1")
        os.makedirs(secrets)
        shutil.copy(os.path.join(TESTDATA, "keys", "rsa3072_key.pem"), os.path.join(secrets, "apiclient_key.pem"))
        with open(os.path.join(secrets, "apiv3_key.txt"), "w") as f:
            f.write(APIV3 + "\n")
        with open(os.path.join(secrets, "seed.json"), "w") as f:
            json.dump({"users": [{"openid": "o-seeded-user", "organization_id": "1004"}]}, f)
        with open(os.path.join(TESTDATA, "keys", "rsa3072_key.pem")) as f:
            self.key_pem = f.read()
        self.key_body = "".join(l for l in self.key_pem.splitlines() if l and not l.startswith("-----"))
        self.write("palmgate.service_test.1.0.log", CLEAN_GATEWAY)
        self.write("palmgate-sandbox.service_test.1.1.log", f"GET /v3/palmservice/authorization/openid/{OPENID}\n")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text, mode="w"):
        with open(os.path.join(self.dir, name), mode) as f:
            f.write(text)

    def scan(self, *extra):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = scan_test_logs.main(["--log-dir", self.dir, "--sources", __file__] + list(extra))
        return code, out.getvalue()

    def assertFlags(self, rule, text, log="palmgate.gateway_process_test.2.0.log"):
        self.write(log, CLEAN_GATEWAY + text + "\n")
        code, out = self.scan()
        self.assertEqual(code, 1, out)
        self.assertIn(rule, out)
        return out

    def test_clean_logs_pass(self):
        code, out = self.scan()
        self.assertEqual(code, 0, out)
        self.assertIn("1 gateway logs, 1 other process logs", out)

    def test_no_gateway_log_is_an_error_not_a_pass(self):
        os.remove(os.path.join(self.dir, "palmgate.service_test.1.0.log"))
        self.assertEqual(self.scan()[0], 2)

    def test_flags_the_private_key_banner(self):
        self.assertFlags("private key banner", "-----BEGIN " + "RSA PRIVATE KEY-----")

    def test_flags_a_pem_wrapped_key_and_does_not_print_it(self):
        out = self.assertFlags("private key material", self.key_pem.replace("-----BEGIN", "BEGIN"))
        self.assertNotIn(self.key_body[:32], out)

    def test_flags_an_unwrapped_excerpt_at_any_offset(self):
        self.assertFlags("private key material", '{"message":"x","detail":"' + self.key_body[17:17 + 64] + '"}')

    def test_flags_a_key_in_a_non_gateway_log(self):
        self.assertFlags("private key material", self.key_body[100:200], log="palmgate-sandbox.x.1.2.log")

    def test_flags_the_apiv3_key(self):
        out = self.assertFlags("APIv3 key", f'{{"message":"key {APIV3}"}}')
        self.assertNotIn(APIV3, out)

    def test_flags_authorization_values(self):
        self.assertFlags("Authorization header value",
                         'WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="abc",timestamp="1"')
        self.assertFlags("Authorization header value", '{"authorization":"WECHATPAY2 x"}')
        self.assertFlags("Authorization header value", "Authorization: Bearer x")

    def test_flags_openids_in_gateway_logs_only(self):
        self.assertFlags("clear openid", f'{{"message":"rpc","openid":"{OPENID}"}}')
        self.assertFlags("clear openid", '{"message":"rpc","path":"/openid/o-seeded-user?x"}')
        os.remove(os.path.join(self.dir, "palmgate.gateway_process_test.2.0.log"))
        self.assertEqual(self.scan()[0], 0)  # the sandbox log's openid is its business

    def test_openid_must_be_a_whole_token(self):
        self.write("palmgate.x.3.0.log", '{"message":"no-seeded-user-here o-seeded-users"}\n')
        self.assertEqual(self.scan()[0], 0)

    def test_ctest_log_gateway_lines_get_every_rule(self):
        ctest_log = os.path.join(self.dir, "LastTest.log")
        self.write("LastTest.log", textwrap.dedent(f"""\
            [ RUN      ] PalmgateServiceTest.AnswersOn
            Test openid {OPENID} in a test's own output is fine
            {{"time":"2025-05-20T08:00:00Z","level":"info","message":"rpc","openid":"{OPENID}"}}
            """))
        code, out = self.scan("--ctest-log", ctest_log)
        self.assertEqual(code, 1, out)
        self.assertIn("LastTest.log:3: clear openid", out)
        self.write("LastTest.log", f"[ RUN      ] X\nTest openid {OPENID}\nkey {APIV3}\n")
        code, out = self.scan("--ctest-log", ctest_log)
        self.assertEqual(code, 1, out)
        self.assertIn("LastTest.log:3: APIv3 key", out)
        self.assertNotIn("clear openid", out)


if __name__ == "__main__":
    unittest.main()
