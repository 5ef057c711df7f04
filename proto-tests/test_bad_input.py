"""Bad input over raw sockets: each case must close only its own connection, count an
error, and leave the proxy up while a concurrent healthy client keeps working."""

from __future__ import annotations

import random
import socket
import ssl
import struct
import threading
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire as kw
from harness import Stack, http_get

MAX_FRAME = 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """This module's proxy accepts frames up to 1 MiB, so an oversized frame is cheap."""
    s = Stack(workdir=tmp_path_factory.mktemp("bad_input"), max_frame_bytes=MAX_FRAME).start()
    yield s
    s.stop()


class HealthyClient:
    """One raw connection asking for Metadata in a loop while a test misbehaves on
    another connection; every answer must name the proxy."""

    def __init__(self, proxy, canary_topic: str):
        self.proxy = proxy
        self.canary_topic = canary_topic
        self.sock = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=10)
        self.answers = 0
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        correlation_id = 0
        try:
            while not self._stop.is_set():
                correlation_id += 1
                self.sock.sendall(kw.metadata_request(correlation_id))
                body = kw.read_frame(self.sock)
                if body is None:
                    self.failure = "the proxy closed the healthy connection"
                    return
                cid, brokers = kw.parse_metadata_v1_brokers(body)
                if cid != correlation_id:
                    self.failure = f"correlation id {cid}, expected {correlation_id}"
                    return
                if not brokers or any(b.port != self.proxy.node_port for b in brokers):
                    self.failure = f"unexpected brokers {brokers}"
                    return
                self.answers += 1
                time.sleep(0.005)
        except OSError as e:
            self.failure = f"healthy connection failed: {e!r}"

    def answers_after(self, count: int, timeout: float = 10.0) -> None:
        """Waits until ``count`` more answers arrived."""
        target = self.answers + count
        deadline = time.monotonic() + timeout
        while self.answers < target and self.failure is None:
            assert time.monotonic() < deadline, "the healthy client stopped getting answers"
            time.sleep(0.01)
        assert self.failure is None, self.failure

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def canary_topic(stack):
    """A topic a fresh producer writes to after each bad input."""
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for f in admin.create_topics([NewTopic("bad-input-canary", 1, 1)]).values():
        f.result(timeout=15)
    return "bad-input-canary"


@pytest.fixture
def healthy(proxy, canary_topic):
    client = HealthyClient(proxy, canary_topic)
    client.answers_after(3)
    yield client
    client.close()


def errors_total(proxy) -> float:
    return proxy.metric_sum("quarantine_errors_total")


def open_connections(proxy) -> float:
    return proxy.metric_sum("quarantine_connections_open")


def assert_proxy_fine(proxy, healthy: HealthyClient, errors_before: float | None) -> None:
    """The proxy is up, the healthy client still gets answers, a real client still works,
    and (when given a baseline) the error counter rose."""
    assert proxy.alive(), f"the proxy exited with {proxy.proc.returncode}"
    assert http_get(proxy.admin_url + "/live")[0] == 200
    healthy.answers_after(5)
    p = Producer({"bootstrap.servers": proxy.bootstrap, "message.timeout.ms": 20000})
    delivered = []
    p.produce(healthy.canary_topic, b"still works", on_delivery=lambda e, m: delivered.append(e))
    p.flush(30)
    assert delivered == [None], f"a fresh producer failed after the bad input: {delivered}"
    if errors_before is not None:
        deadline = time.monotonic() + 5
        while errors_total(proxy) <= errors_before:
            assert time.monotonic() < deadline, "quarantine_errors_total did not rise"
            time.sleep(0.05)


def raw_connection(proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=10)


def tls_client_hello() -> bytes:
    """The first bytes a TLS client sends: a real ClientHello record."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # handshake record
    return hello


CASES = {
    # A negative size prefix.
    "negative_frame_size": struct.pack(">i", -16) + b"\x00" * 16,
    # One byte over the configured limit (the body need not follow).
    "oversized_frame": struct.pack(">i", MAX_FRAME + 1) + b"\x00" * 64,
    # Random bytes, seeded so a failure reproduces.
    "garbage_bytes": random.Random(42).randbytes(4096),
    # A frame of plausible size whose header is nonsense (api key -1, version -1).
    "garbage_frame_body": struct.pack(">i", 24) + b"\xff" * 24,
    # An API key no Kafka version defines.
    "unknown_api_key": kw.request(9999, 0, 7),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_closes_only_that_connection(proxy, healthy, case):
    before = errors_total(proxy)
    with raw_connection(proxy) as s:
        s.sendall(CASES[case])
        assert kw.closed_by_peer(s), f"{case}: the proxy kept the connection open"
    assert_proxy_fine(proxy, healthy, before)


def test_tls_client_hello_on_plaintext_port(proxy, healthy):
    before = errors_total(proxy)
    with raw_connection(proxy) as s:
        s.sendall(tls_client_hello())
        assert kw.closed_by_peer(s), "the proxy kept a TLS connection open"
    assert_proxy_fine(proxy, healthy, before)
    assert "tls" in proxy.log_text().lower(), "no log line hints at TLS"


def test_truncated_frame_then_close(proxy, healthy):
    before = errors_total(proxy)
    open_before = open_connections(proxy)
    frame = kw.metadata_request(1)
    with raw_connection(proxy) as s:
        s.sendall(frame[: len(frame) // 2])
        s.shutdown(socket.SHUT_WR)
        assert kw.closed_by_peer(s)
    assert_proxy_fine(proxy, healthy, before)
    wait_connections(proxy, open_before)


def test_client_vanishes_mid_request(proxy, healthy):
    open_before = open_connections(proxy)
    for _ in range(5):
        s = raw_connection(proxy)
        # Several whole requests in flight, then a reset instead of a goodbye.
        s.sendall(b"".join(kw.metadata_request(i) for i in range(20)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert_proxy_fine(proxy, healthy, None)
    wait_connections(proxy, open_before)


def test_pipelined_requests_keep_order(proxy):
    """Many requests written at once come back in order with their correlation ids."""
    with raw_connection(proxy) as s:
        ids = list(range(1000, 1100))
        s.sendall(b"".join(kw.api_versions_request(i) if i % 2 else kw.metadata_request(i)
                           for i in ids))
        for i in ids:
            body = kw.read_frame(s)
            assert body is not None, "the proxy closed a well-behaved connection"
            assert struct.unpack_from(">i", body)[0] == i


def test_api_versions_answered(proxy):
    with raw_connection(proxy) as s:
        s.sendall(kw.api_versions_request(5))
        cid, error, apis = kw.parse_api_versions_v0(kw.read_frame(s))
    assert (cid, error) == (5, 0)
    assert kw.METADATA in apis and kw.API_VERSIONS in apis


def wait_connections(proxy, count: float, timeout: float = 10.0) -> None:
    """The proxy's open-connection gauge comes back to ``count``: nothing leaked."""
    deadline = time.monotonic() + timeout
    while open_connections(proxy) > count:
        assert time.monotonic() < deadline, (
            f"{open_connections(proxy)} connections open, expected {count}")
        time.sleep(0.05)
