"""The quarantine binary's edges: check-config and its exit code 64, environment
overrides, --help, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from harness import Quarantine, http_get, quarantine_bin, wait_port

GOOD = """\
proxy:
  listen: "127.0.0.1:9092"
  advertised_host: "127.0.0.1"
  node_port_base: 19100
  max_frame_bytes: 104857600
upstream:
  bootstrap_servers: ["127.0.0.1:9093"]
admin:
  listen: "127.0.0.1:9644"
log:
  format: text
  level: info
"""


@pytest.fixture(scope="module")
def binary():
    path = quarantine_bin()
    if not path.exists():
        pytest.fail(f"{path} missing: run cargo build")
    return path


def check_config(binary, tmp_path, text: str, env: dict | None = None):
    cfg = tmp_path / "quarantine.yaml"
    cfg.write_text(text)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QUARANTINE__")}
    return subprocess.run([str(binary), "check-config", str(cfg)], capture_output=True,
                          text=True, timeout=30, env={**clean, **(env or {})},
                          stdin=subprocess.DEVNULL)


def test_help(binary):
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "check-config" in out.stdout and "run" in out.stdout


def test_check_config_accepts_a_good_file(binary, tmp_path):
    out = check_config(binary, tmp_path, GOOD)
    assert out.returncode == 0, out.stderr


def test_check_config_accepts_an_override_of_the_guard_alone(binary, tmp_path):
    text = GOOD + ("watch:\n  overrides:\n    - groups: {include: [nightly-.*]}\n"
                   "      guard: {max_consecutive: 10, window: 15m, max_ratio: 0.5}\n")
    out = check_config(binary, tmp_path, text)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("text, key", [
    (GOOD.replace('listen: "127.0.0.1:9092"', "listen: nowhere"), "proxy.listen"),
    (GOOD.replace("format: text", "format: xml"), "log.format"),
    (GOOD.replace('bootstrap_servers: ["127.0.0.1:9093"]', 'bootstrap_servers: ["nohost"]'),
     "upstream.bootstrap_servers"),
    (GOOD.replace('admin:\n  listen: "127.0.0.1:9644"', 'admin:\n  listen: "x:y"'),
     "admin.listen"),
    (GOOD + "bogus_section: 1\n", "bogus_section"),
    (GOOD + "watch:\n  guard:\n    max_consecutive: 0\n", "watch.guard.max_consecutive"),
    (GOOD + "watch:\n  overrides:\n    - groups: {include: [nightly]}\n      guard: {window: 0}\n",
     "watch.overrides[0].guard.window"),
])
def test_check_config_names_the_bad_key(binary, tmp_path, text, key):
    out = check_config(binary, tmp_path, text)
    assert out.returncode == 64, (out.returncode, out.stderr)
    assert key in out.stderr, out.stderr


def test_environment_overrides_the_file(binary, tmp_path):
    out = check_config(binary, tmp_path, GOOD, {"QUARANTINE__PROXY__LISTEN": "not-an-address"})
    assert out.returncode == 64 and "proxy.listen" in out.stderr, out.stderr
    out = check_config(binary, tmp_path, GOOD.replace("format: text", "format: xml"),
                       {"QUARANTINE__LOG__FORMAT": "json"})
    assert out.returncode == 0, out.stderr


def test_sigterm_stops_cleanly(tmp_path):
    # Nothing listens upstream: the proxy still starts, just never becomes ready.
    q = Quarantine(upstream="127.0.0.1:9", workdir=tmp_path)
    q.write_config()
    q.proc = subprocess.Popen([str(quarantine_bin()), "run", "--config", str(q.config_path)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", q.admin_port, 20, q.proc)
        assert http_get(q.admin_url + "/live")[0] == 200
        time.sleep(0.5)  # let the signal handler be installed: startup races are not the point
        q.proc.send_signal(signal.SIGTERM)
        assert q.proc.wait(30) == 0
    finally:
        if q.proc.poll() is None:
            q.proc.kill()
            q.proc.wait()
