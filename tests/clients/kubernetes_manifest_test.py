#!/usr/bin/python3
"""deploy/kubernetes/palmgate.yaml parses as YAML and has the fields operators rely on:
a Deployment with native gRPC liveness/readiness probes, resource limits, keys mounted as files
from a Secret and only PALMGATE_* flags that palmgate knows; a PodDisruptionBudget; a Service."""

import os
import re
import subprocess
import sys
import unittest

import yaml  # python3-yaml (a dependency of Debian's docker-compose)

SOURCE_DIR = os.environ.get("PGT_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
MANIFEST = os.path.join(SOURCE_DIR, "deploy", "kubernetes", "palmgate.yaml")


def duration_s(text):
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


class KubernetesManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(MANIFEST) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        cls.by_kind = {d["kind"]: d for d in docs}

    def test_has_deployment_pdb_and_service(self):
        self.assertEqual(sorted(self.by_kind), ["Deployment", "PodDisruptionBudget", "Service"])
        self.assertEqual(self.by_kind["PodDisruptionBudget"]["apiVersion"], "policy/v1")
        labels = self.by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
        for kind in ("PodDisruptionBudget",):
            self.assertEqual(self.by_kind[kind]["spec"]["selector"]["matchLabels"], labels)
        self.assertEqual(self.by_kind["Service"]["spec"]["selector"], labels)
        ports = {p["name"]: p for p in self.by_kind["Service"]["spec"]["ports"]}
        self.assertEqual(ports["grpc"]["appProtocol"], "grpc")

    def test_deployment_uses_native_grpc_probes_limits_and_secret_files(self):
        spec = self.by_kind["Deployment"]["spec"]
        self.assertGreaterEqual(spec["replicas"], 2)
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["readinessProbe"]["grpc"]["port"], 50051)
        self.assertEqual(container["readinessProbe"]["grpc"]["service"], "palmgate.v1.PalmAuthorization")
        self.assertEqual(container["livenessProbe"]["grpc"]["port"], 50051)
        for resource in ("cpu", "memory"):
            self.assertIn(resource, container["resources"]["limits"])
            self.assertIn(resource, container["resources"]["requests"])
        secret_volumes = {v["name"]: v for v in pod["volumes"] if "secret" in v}
        self.assertTrue(secret_volumes)
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        for name in secret_volumes:
            self.assertTrue(mounts[name]["readOnly"])
            for var in ("PALMGATE_MERCHANT_PRIVATE_KEY", "PALMGATE_WECHATPAY_PUBLIC_KEY"):
                self.assertTrue(env[var].startswith(mounts[name]["mountPath"] + "/"), var)
        # Secrets only as files: no env value is taken from a Secret.
        self.assertFalse([e for e in container["env"] if "valueFrom" in e])
        # Drain fits in the termination grace period.
        self.assertLess(duration_s(env["PALMGATE_DRAIN_DELAY"]) + duration_s(env["PALMGATE_SHUTDOWN_GRACE"]),
                        pod["terminationGracePeriodSeconds"])

    def test_every_palmgate_variable_names_a_flag(self):
        palmgate = os.environ.get("PGT_PALMGATE")
        if not palmgate:
            self.skipTest("PGT_PALMGATE not set (run through ctest)")
        helpfull = subprocess.run([palmgate, "--helpfull"], capture_output=True, text=True).stdout
        container = self.by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        for e in container["env"]:
            flag = e["name"][len("PALMGATE_"):].lower()
            self.assertIn(f"-{flag} ", helpfull, e["name"])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
