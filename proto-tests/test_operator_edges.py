"""What an operator runs into at the process edge: a closed log pipe, SIGTERM, colour codes
in log files, Rust Debug text in log fields, a broker-node port that is taken, an admin API
open to the network, and errors about values set through the environment or flags."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from harness import (Quarantine, Tansu, TANSU_NODE_ID, free_port, http_get, quarantine_bin,
                     sum_metric, wait_port)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUARANTINE__") and k not in ("NO_COLOR", "QUARANTINE_LOG")}
    env.update(extra)
    return env


def wait_for(what: str, check, timeout: float = 60.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout}s")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    t = Tansu(port=free_port(), workdir=tmp_path_factory.mktemp("tansu")).start()
    yield t
    t.stop()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attempt", range(3))
def test_closed_log_pipe_never_stops_sigterm(broker, tmp_path, attempt):
    """`quarantine run ... 2>&1 | head -3`: once head has gone, every log line hits EPIPE.
    The proxy keeps serving, becomes ready, and SIGTERM still stops it with exit 0."""
    q = Quarantine(upstream=broker.address, workdir=tmp_path, log_level="debug")
    q.write_config()
    head = subprocess.Popen(["head", "-3"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([str(quarantine_bin()), "run", "--config", str(q.config_path)],
                            stdin=subprocess.DEVNULL, stdout=head.stdin,
                            stderr=subprocess.STDOUT, env=clean_env())
    head.stdin.close()  # only head and the proxy hold the pipe now
    try:
        assert head.wait(60) == 0
        # Work that logs (debug level: every connection and request) after the pipe closed.
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", q.listen_port), timeout=5):
                pass
        wait_for("/ready 200", lambda: http_get(q.admin_url + "/ready")[0] == 200, proc=proc)
        assert http_get(q.admin_url + "/live")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(120)
def test_text_logs_to_a_file_carry_no_colour_and_no_debug_text(broker, tmp_path):
    q = Quarantine(upstream=broker.address, workdir=tmp_path)
    q.write_config()
    env = clean_env()  # no NO_COLOR: the proxy itself must see stderr is not a terminal
    with open(q.log_path, "wb") as log:
        q.proc = subprocess.Popen([str(quarantine_bin()), "run", "--config", str(q.config_path)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  env=env)
    try:
        wait_for("/ready 200", lambda: http_get(q.admin_url + "/ready")[0] == 200, proc=q.proc)
        with socket.create_connection(("127.0.0.1", q.node_port), timeout=5):
            pass
        check_operator_metrics(q.metrics_text(), q.proc.pid)
    finally:
        q.stop()
    text = q.log_text()
    assert "admin server listening" in text and "broker node listener open" in text, text
    assert "\x1b[" not in text, text[:2000]
    for debug in ("Some(", "None", '["', "{ "):
        assert debug not in text, f"Rust Debug text {debug!r} in the log:\n{text}"
    assert f"upstream={broker.address}" in text, text


def check_operator_metrics(text: str, pid: int) -> None:
    """Build info, process metrics of this very process, readiness."""
    assert re.search(r'^quarantine_build_info\{version="[0-9.]+",commit="[^"]*"\} 1$', text, re.M), text
    assert sum_metric(text, "quarantine_ready") == 1
    rss = sum_metric(text, "process_resident_memory_bytes")
    status = open(f"/proc/{pid}/status").read()
    vm_rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024
    assert 0 < rss and abs(rss - vm_rss) < max(vm_rss, rss) * 0.5, (rss, vm_rss)
    assert sum_metric(text, "process_open_fds") >= 3
    assert sum_metric(text, "process_max_fds") > 0
    start = sum_metric(text, "process_start_time_seconds")
    assert abs(start - time.time()) < 3600, start
    assert "process_cpu_seconds_total" in text


@pytest.mark.timeout(180)
def test_ready_is_503_while_a_broker_node_listener_cannot_bind(broker, tmp_path):
    q = Quarantine(upstream=broker.address, workdir=tmp_path)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", q.node_port))
    blocker.listen()
    try:
        q.start(wait_ready=False)
        wait_for("a listener_bind error",
                 lambda: 'kind="listener_bind"' in q.metrics_text(), proc=q.proc)
        status, body = http_get(q.admin_url + "/ready")
        assert status == 503, body
        assert str(TANSU_NODE_ID) in body, body
        assert sum_metric(q.metrics_text(), "quarantine_ready") == 0
    finally:
        blocker.close()
    # The port is free again: the proxy retries the bind on its own and turns ready.
    try:
        wait_for("/ready 200 once the port is free",
                 lambda: http_get(q.admin_url + "/ready")[0] == 200, proc=q.proc)
        wait_port("127.0.0.1", q.node_port, 10, q.proc)
        assert sum_metric(q.metrics_text(), "quarantine_errors_total") >= 1
        assert sum_metric(q.metrics_text(), "quarantine_ready") == 1
    finally:
        q.stop()


def run_briefly(args: list[str], env: dict[str, str], timeout: float = 30):
    return subprocess.run([str(quarantine_bin()), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_an_environment_override_error_names_the_variable(tmp_path):
    q = Quarantine(upstream="127.0.0.1:9", workdir=tmp_path)
    cfg = str(q.write_config())
    out = run_briefly(["run", "--config", cfg],
                      clean_env(QUARANTINE__PROXY__LISTEN="nowhere"))
    assert out.returncode == 64, out.stderr
    assert "QUARANTINE__PROXY__LISTEN" in out.stderr and "proxy.listen" in out.stderr, out.stderr
    out = run_briefly(["check-config", cfg],
                      clean_env(QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS="a:1,nohost"))
    assert out.returncode == 64, out.stderr
    assert "QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS" in out.stderr, out.stderr
    out = run_briefly(["run", "--config", cfg, "--listen", "nowhere"], clean_env())
    assert out.returncode == 64, out.stderr
    assert "--listen" in out.stderr and "QUARANTINE__" not in out.stderr, out.stderr
    # A bad key in the file still names the key alone.
    (tmp_path / "bad.yaml").write_text("log:\n  format: xml\n")
    out = run_briefly(["check-config", str(tmp_path / "bad.yaml")], clean_env())
    assert out.returncode == 64 and "log.format" in out.stderr, out.stderr
    assert "environment" not in out.stderr, out.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("token, warned", [(None, True), ("s3cret", False)])
def test_admin_beyond_loopback_without_a_token_is_warned_about(tmp_path, token, warned):
    port = free_port()
    extra = {"QUARANTINE__ADMIN__LISTEN": f"0.0.0.0:{port}"}
    if token:
        extra["QUARANTINE__ADMIN__TOKEN"] = token
    q = Quarantine(upstream="127.0.0.1:9", workdir=tmp_path, extra_env=extra)
    q.admin_port = port
    q.start(wait_ready=False)
    try:
        wait_for("the admin listener", lambda: "admin server listening" in q.log_text(),
                 proc=q.proc)
    finally:
        q.stop()
    assert ("without admin.token" in q.log_text()) == warned, q.log_text()
