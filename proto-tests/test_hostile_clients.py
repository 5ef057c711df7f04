"""Hostile clients over raw sockets: a connection flood (bounded by
``proxy.max_connections``, with a log line and ``quarantine_connections_refused_total``),
slowloris on the Kafka and admin ports, frames announcing a size they never send, SASL
frames before ApiVersions, garbage after a valid frame. Each closes (or stalls) only its
own connection: a healthy connection opened before keeps its answers, a fresh real client
still works, and the proxy's memory stays within a stated bound."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest
from confluent_kafka import Producer

import kafka_wire as kw
from harness import Stack

MAX_CONNECTIONS = 60
MAX_FRAME = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if os.environ.get("PROTO_TESTS_VIA") == "direct":
        pytest.skip("PROTO_TESTS_VIA=direct: these tests are about the proxy")
    s = Stack(workdir=tmp_path_factory.mktemp("hostile"), max_frame_bytes=MAX_FRAME,
              extra_env={"QUARANTINE__PROXY__MAX_CONNECTIONS": str(MAX_CONNECTIONS)})
    s.start()
    yield s
    s.stop()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def answers(sock: socket.socket, correlation_id: int) -> bool:
    """Whether ``sock`` still gets an ApiVersions answer."""
    sock.sendall(kw.api_versions_request(correlation_id))
    body = kw.read_frame(sock)
    return body is not None and struct.unpack_from(">i", body)[0] == correlation_id


def fresh_client_works(proxy, topic: str = "hostile-canary") -> None:
    p = Producer({"bootstrap.servers": proxy.bootstrap, "message.timeout.ms": 30000})
    done = []
    p.produce(topic, b"still works", on_delivery=lambda e, m: done.append(e))
    p.flush(40)
    assert done == [None], f"a fresh producer failed: {done}"


def wait_gauge(proxy, name: str, want, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = proxy.metric_sum(name)
        if want(value):
            return value
        assert time.monotonic() < deadline, f"{name} = {value}"
        time.sleep(0.1)


def test_connection_flood_is_bounded(stack):
    proxy = stack.proxy
    pid = proxy.proc.pid
    healthy = connect(proxy.listen_port)
    assert answers(healthy, 1)
    before = rss_mib(pid)
    held = [connect(proxy.listen_port) for _ in range(MAX_CONNECTIONS - 1)]
    wait_gauge(proxy, "quarantine_connections_open", lambda v: v >= MAX_CONNECTIONS)
    # The flood: every connection past the limit is closed by the proxy.
    flood = []
    for _ in range(300):
        s = connect(proxy.listen_port)
        flood.append(s)
    closed = sum(1 for s in flood if kw.closed_by_peer(s, timeout=10))
    assert closed == len(flood), f"{len(flood) - closed} connections past the limit stayed open"
    refused = wait_gauge(proxy, "quarantine_connections_refused_total", lambda v: v >= 300)
    at_limit = rss_mib(pid)
    assert "connection limit reached" in proxy.log_text()
    # The connections inside the limit are untouched.
    assert answers(healthy, 2)
    for s in flood + held:
        s.close()
    wait_gauge(proxy, "quarantine_connections_open", lambda v: v <= 1)
    fresh_client_works(proxy)
    assert answers(healthy, 3)
    healthy.close()
    print(f"flood: {MAX_CONNECTIONS} open, {int(refused)} refused; proxy RSS {before:.1f} MiB "
          f"-> {at_limit:.1f} MiB at the limit")
    assert at_limit - before < 64, "idle connections cost more than ~1 MiB each"


def test_slowloris_and_lying_lengths_stall_only_themselves(stack):
    proxy = stack.proxy
    pid = proxy.proc.pid
    healthy = connect(proxy.listen_port)
    assert answers(healthy, 1)
    before = rss_mib(pid)
    # Twenty connections announce the largest frame allowed and send almost nothing.
    liars = []
    for _ in range(20):
        s = connect(proxy.listen_port)
        s.sendall(struct.pack(">i", MAX_FRAME) + b"\x00\x12")
        liars.append(s)
    # Twenty drip a request a byte at a time.
    drips = [connect(proxy.listen_port) for _ in range(20)]
    frame = kw.metadata_request(9)
    for i in range(len(frame) - 1):
        for s in drips:
            s.sendall(frame[i:i + 1])
        if i % 5 == 0:
            assert answers(healthy, 100 + i), "the healthy connection stalled with the drippers"
    grown = rss_mib(pid) - before
    print(f"slowloris: 20 connections announcing {MAX_FRAME >> 20} MiB and 20 dripping; "
          f"proxy RSS +{grown:.1f} MiB")
    # A connection that finally finishes its frame gets its answer.
    drips[0].sendall(frame[-1:])
    body = kw.read_frame(drips[0])
    assert body is not None and struct.unpack_from(">i", body)[0] == 9
    for s in liars + drips:
        s.close()
    fresh_client_works(proxy)
    assert answers(healthy, 2)
    healthy.close()
    assert grown < 64, f"proxy RSS grew {grown:.1f} MiB for 40 stalled connections"


def test_sasl_before_api_versions_and_garbage_after_a_frame(stack):
    proxy = stack.proxy
    healthy = connect(proxy.listen_port)
    assert answers(healthy, 1)
    # SaslHandshake v1 and SaslAuthenticate v0 as the very first frames: the broker
    # (no SASL here) answers or the connection closes; nothing else is affected.
    for api, version, body in ((17, 1, struct.pack(">h", 5) + b"PLAIN"),
                               (36, 0, struct.pack(">i", 11) + b"\x00user\x00pass")):
        with connect(proxy.listen_port) as s:
            s.sendall(kw.request(api, version, 3, body))
            s.settimeout(10)
            try:
                kw.read_frame(s)
            except OSError:
                pass
        assert answers(healthy, api)
    # A valid request, then garbage (a size no frame may have, then random bytes): the
    # connection closes, as a Kafka broker closes it; the answer to the valid request may
    # or may not make it out first (Apache Kafka drops it too).
    with connect(proxy.listen_port) as s:
        s.sendall(kw.api_versions_request(4) + b"\x7f\xff\xff\xff"
                  + random.Random(7).randbytes(300))
        assert kw.closed_by_peer(s), "the proxy kept reading garbage"
    assert proxy.alive()
    assert answers(healthy, 99)
    healthy.close()
    fresh_client_works(proxy)


def test_admin_slowloris_leaves_the_admin_port_usable(stack):
    proxy = stack.proxy
    stalled = []
    for _ in range(30):
        s = connect(proxy.admin_port)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        stalled.append(s)
    for i in range(10):
        for s in stalled:
            s.sendall(b"a")
        status = proxy.metric_sum("quarantine_connections_open")  # /metrics answers
        assert status >= 0
    from harness import http_get
    assert http_get(proxy.admin_url + "/live")[0] == 200
    for s in stalled:
        s.close()
