"""`quarantine inject`: Kubernetes YAML in, the same YAML with the sidecar out. Every
output is checked with `kubernetes-validate --strict` (installed by scripts/setup.sh in
the deploy-tools venv), and the injected container must be the one the plain manifests in
deploy/kubernetes/plain/ ship."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import CACHE_DIR, REPO_ROOT, quarantine_bin

PLAIN = REPO_ROOT / "deploy" / "kubernetes" / "plain"
BASE = REPO_ROOT / "deploy" / "kubernetes" / "kustomize" / "example" / "base" / "deployment.yaml"


DEPLOY_BIN = CACHE_DIR / "deploy-venv" / "bin"


def deploy_tool(name: str) -> str:
    """A tool of the deploy-tools venv (scripts/setup.sh), which also has PyYAML; the test
    venv is left as it is."""
    found = str(DEPLOY_BIN / name) if (DEPLOY_BIN / name).exists() else shutil.which(name)
    if not found:
        if os.environ.get("QUARANTINE_TESTS_REQUIRE_REAL") == "1":
            pytest.fail(f"{name} missing from {DEPLOY_BIN}: run scripts/setup.sh")
        pytest.skip(f"{name} missing: run scripts/setup.sh")
    return found


def validator() -> str:
    return deploy_tool("kubernetes-validate")


class yaml:  # noqa: N801 - PyYAML's two calls, run by the deploy venv's Python
    @staticmethod
    def safe_load_all(text: str) -> list:
        out = subprocess.run(
            [deploy_tool("python"), "-c",
             "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"],
            input=text, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout)

    @staticmethod
    def safe_load(text: str):
        (doc,) = yaml.safe_load_all(text)
        return doc

    @staticmethod
    def safe_dump(doc) -> str:
        return subprocess.run(
            [deploy_tool("python"), "-c",
             "import json, sys, yaml; print(yaml.safe_dump(json.load(sys.stdin)), end='')"],
            input=json.dumps(doc), capture_output=True, text=True, timeout=60,
            check=True).stdout


def validate(tmp_path: Path, text: str) -> None:
    path = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(text)
    out = subprocess.run([validator(), "--strict", "--quiet", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, f"{out.stdout}{out.stderr}\n{text}"


def inject(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(quarantine_bin()), "inject", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def shipped_sidecar(path: Path) -> dict:
    spec = pod_spec(yaml.safe_load(path.read_text()))
    (c,) = [c for c in spec.get("containers", []) + spec.get("initContainers", [])
            if c["name"] == "quarantine"]
    return c


def without_upstream(container: dict) -> dict:
    c = copy.deepcopy(container)
    c["env"] = [e for e in c["env"] if e["name"] != "QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS"]
    return c


@pytest.mark.parametrize("classic", [False, True])
def test_injects_the_shipped_sidecar_and_rewires_the_app(tmp_path, classic):
    flags = ["--classic"] if classic else []
    out = inject(*flags, str(BASE))
    assert out.returncode == 0, out.stderr
    assert "deployment/orders-consumer injected" in out.stderr
    validate(tmp_path, out.stdout)
    (doc,) = docs(out.stdout)
    spec = pod_spec(doc)
    where = "containers" if classic else "initContainers"
    (side,) = [c for c in spec[where] if c["name"] == "quarantine"]
    shipped = shipped_sidecar(PLAIN / ("deployment-sidecar.yaml" if classic
                                       else "deployment-native-sidecar.yaml"))
    assert without_upstream(side) == shipped
    # The app's bootstrap.servers now points at the sidecar; the sidecar goes where the app
    # went.
    (app,) = [c for c in spec["containers"] if c["name"] == "app"]
    assert {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": "localhost:9092"} in app["env"]
    assert {"name": "QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS",
            "value": "kafka-bootstrap.kafka.svc.cluster.local:9092"} in side["env"]
    assert {"name": "quarantine-config", "configMap": {"name": "quarantine-config"}} in spec["volumes"]
    assert spec["terminationGracePeriodSeconds"] == 45
    assert doc["spec"]["template"]["metadata"]["labels"]["quarantine/sidecar"] == "true"
    # Everything else is as it was.
    original = yaml.safe_load(BASE.read_text())
    assert doc["metadata"] == original["metadata"]
    assert doc["spec"]["selector"] == original["spec"]["selector"]
    assert app["ports"] == original["spec"]["template"]["spec"]["containers"][0]["ports"]

    # Injecting the output again changes nothing.
    again = inject(*flags, stdin=out.stdout)
    assert again.returncode == 0, again.stderr
    assert again.stdout == out.stdout
    assert "already injected: unchanged" in again.stderr


STATEFULSET = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ledger}
spec:
  serviceName: ledger
  selector: {matchLabels: {app: ledger}}
  template:
    metadata: {labels: {app: ledger}}
    spec:
      terminationGracePeriodSeconds: 120
      initContainers:
        - name: migrate
          image: example/ledger-migrate:2
      containers:
        - name: ledger
          image: example/ledger:2
          env:
            - name: SPRING_KAFKA_BOOTSTRAP_SERVERS
              valueFrom: {secretKeyRef: {name: kafka, key: bootstrap}}
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: ledger}
spec:
  clusterIP: None
  selector: {app: ledger}
  ports: [{port: 8080}]
"""


def test_statefulset_list_and_multi_document_from_stdin(tmp_path):
    listed = {"apiVersion": "v1", "kind": "List",
              "items": [yaml.safe_load(BASE.read_text())]}
    text = STATEFULSET + "---\n" + SERVICE + "---\n" + yaml.safe_dump(listed)
    out = inject(stdin=text)
    assert out.returncode == 0, out.stderr
    validate(tmp_path, out.stdout)
    sts, svc, lst = docs(out.stdout)
    assert svc == yaml.safe_load(SERVICE), "other kinds pass through untouched"
    spec = pod_spec(sts)
    # Native sidecar first, before the app's own init container, which may need Kafka.
    assert [c["name"] for c in spec["initContainers"]] == ["quarantine", "migrate"]
    assert spec["terminationGracePeriodSeconds"] == 120, "a longer grace period is kept"
    side = spec["initContainers"][0]
    assert {"name": "QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS",
            "valueFrom": {"secretKeyRef": {"name": "kafka", "key": "bootstrap"}}} in side["env"]
    assert spec["containers"][0]["env"] == [
        {"name": "SPRING_KAFKA_BOOTSTRAP_SERVERS", "value": "localhost:9092"}]
    (item,) = lst["items"]
    assert pod_spec(item)["initContainers"][0]["name"] == "quarantine"
    assert "statefulset/ledger injected" in out.stderr
    assert "deployment/orders-consumer injected" in out.stderr
    again = inject(stdin=out.stdout)
    assert again.returncode == 0 and again.stdout == out.stdout, again.stderr


def test_options_and_an_unknown_variable(tmp_path):
    text = STATEFULSET.replace("SPRING_KAFKA_BOOTSTRAP_SERVERS", "LEDGER_KAFKA")
    out = inject("--image", "registry.example/quarantine:9", "--config-map", "ledger-q",
                 stdin=text)
    assert out.returncode == 0, out.stderr
    spec = pod_spec(docs(out.stdout)[0])
    side = spec["initContainers"][0]
    assert side["image"] == "registry.example/quarantine:9"
    assert {"name": "quarantine-config", "configMap": {"name": "ledger-q"}} in spec["volumes"]
    # Not a known variable: left alone (the sidecar gets its upstream from the ConfigMap)...
    assert spec["containers"][0]["env"][0]["name"] == "LEDGER_KAFKA"
    assert "valueFrom" in spec["containers"][0]["env"][0]
    # ...unless named.
    out = inject("--bootstrap-env", "LEDGER_KAFKA", stdin=text)
    assert out.returncode == 0, out.stderr
    spec = pod_spec(docs(out.stdout)[0])
    assert spec["containers"][0]["env"][0] == {"name": "LEDGER_KAFKA", "value": "localhost:9092"}
    validate(tmp_path, out.stdout)


def test_bad_input_is_an_error_and_prints_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SERVICE + "---\nkind: Deployment\nspec: [\n")
    out = inject(str(bad))
    assert out.returncode == 65, out
    assert out.stdout == ""
    assert "bad.yaml: document 2" in out.stderr, out.stderr
    out = inject(str(tmp_path / "missing.yaml"))
    assert out.returncode == 65 and "missing.yaml" in out.stderr, out.stderr
