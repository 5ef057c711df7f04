"""Faults at either end of the proxy, counted with real clients:

- the broker going away mid-consume and coming back with its data (the gate resets every
  connection and refuses new ones for a while: tansu 0.6.0 as installed has memory storage
  only, so a real kill would lose the log);
- the client's connections reset in the middle of fetch responses (a gate on 127.0.0.2 in
  front of the proxy's listeners, which advertise 127.0.0.2): a healthy consumer gets and
  commits every record and nothing is diverted or hidden;
- a client that sends fetches and stops reading: the proxy stops reading the broker's
  responses for that connection (backpressure) instead of buffering them; its RSS stays
  within a stated bound, and other clients are served.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, Producer

import kafka_wire as kw
from apps.supervisor import start_app
from conftest import RDKAFKA_FAST, unique_name
from fault_support import check_counted, dlq_origins, fault_watch_yaml, gated_fixture
from poison_support import (PoisonStack, create_topic, diagnose, end_offsets, is_poison,
                            order_items, partition_count, produce, quarantined,
                            wait_caught_up, wait_for)
from tcp_gate import Gate

FETCH = 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from gated_fixture(tmp_path_factory, "faults-broker-client",
                             fault_watch_yaml(max_deliveries=2, isolation_idle_timeout="5s"))


@pytest.mark.timeout(600)
def test_broker_away_and_back_mid_consume(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 2)
    produced = produce(stack.bootstrap, topic,
                       order_items(2, 150, poison={(0, 40), (1, 120)}))
    poison = sorted((r for r in produced if is_poison(r.value)), key=lambda r: r.at)
    group = topic + ".g"
    gate = stack.gate
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=topic, group=group, mode="crash",
                    close_on_crash=True, commit="each", session_timeout_ms=3000,
                    max_poll_interval_ms=3000)
    diag = diagnose(stack, app)
    try:
        wait_for(lambda: any(q["group"] == group for q in quarantined(stack.proxy)), 200,
                 "a first poison record diverted", diag)
        gate.cut()
        # Everyone (proxy, application) tried to reconnect and was refused.
        wait_for(lambda: gate.refused >= 5, 60, "reconnects refused while the broker is away",
                 diag)
        gate.restore()
        wait_caught_up(stack, group, topic, end_offsets(produced, 2), 300, diag)
    finally:
        gate.restore()
        app.stop()
    letters = dlq_origins(stack.broker, f"{topic}.dlq", at_least=2)
    check_counted("broker-away-mid-consume", stack, topic, group, produced, app.processed(),
                  poison, letters, allow_duplicates=True)


class ClientGatedStack(PoisonStack):
    """A proxy that advertises 127.0.0.2, where gates relay to its listeners on 127.0.0.1:
    every client connection goes through a gate."""

    def __init__(self, workdir, watch):
        super().__init__(workdir=workdir, watch=watch)
        write = self.proxy.write_config

        def advertise_gate():
            path = write()
            text = path.read_text()
            assert 'advertised_host: "127.0.0.1"' in text, "harness proxy section changed"
            path.write_text(text.replace('advertised_host: "127.0.0.1"',
                                         'advertised_host: "127.0.0.2"'))
            return path
        self.proxy.write_config = advertise_gate
        self.gates: list[Gate] = []

    def start(self) -> "ClientGatedStack":
        super().start()
        for port in (self.proxy.listen_port, self.proxy.node_port):
            self.gates.append(Gate(("127.0.0.2", port), ("127.0.0.1", port)))
        return self

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.2:{self.proxy.listen_port}"

    def stop(self) -> None:
        for g in self.gates:
            g.close()
        super().stop()


@pytest.fixture(scope="module")
def client_gated(tmp_path_factory):
    s = ClientGatedStack(tmp_path_factory.mktemp("client-gated"),
                         fault_watch_yaml(max_deliveries=2, isolation_idle_timeout="5s")).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.timeout(600)
def test_client_connections_reset_mid_response(client_gated, request):
    stack = client_gated
    topic = create_topic(stack.broker, unique_name(request), 2)
    # Small batches, so the consumer needs many fetches.
    produced = produce(stack.broker, topic, order_items(2, 300), **{"batch.num.messages": 20})
    group = topic + ".g"
    for g in stack.gates:
        g.reset_responses(every=4, min_bytes=2000)
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 20000, "message.max.bytes": 20000,
                  "max.partition.fetch.bytes": 20000, **RDKAFKA_FAST})
    c.subscribe([topic])
    processed: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 400
    try:
        while len(processed) < len(produced):
            assert time.monotonic() < deadline, f"consumed {len(processed)} of {len(produced)}"
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            processed.add((m.partition(), m.offset()))
            c.commit(message=m, asynchronous=False)
    finally:
        c.close()
        for g in stack.gates:
            g.reset_responses(0, 0)
    resets = sum(g.resets for g in stack.gates)
    assert resets >= 3, f"only {resets} responses were cut"
    wait_caught_up(stack, group, topic, end_offsets(produced, 2), 60)
    assert partition_count(stack.broker, f"{topic}.dlq") is None, "something was dead-lettered"
    figures = check_counted("client-reset-mid-response", stack, topic, group, produced,
                            processed, [], [])
    print(f"client resets mid-response: {resets}; {figures}")


def fetch_v4(correlation_id: int, topic: str, max_bytes: int) -> bytes:
    """A Fetch v4 request for partition 0 from offset 0."""
    t = topic.encode()
    body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(t)) + t
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, max_bytes)
    return kw.request(FETCH, 4, correlation_id, body)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# The bound this test holds the proxy to: its RSS may grow by at most this much while a
# client that stopped reading has ~300 MiB of fetch responses coming.
SLOW_READER_BOUND_MIB = 96


@pytest.mark.timeout(600)
def test_client_that_stops_reading_gets_backpressure_not_buffering(stack, request):
    topic = create_topic(stack.broker, unique_name(request), 1)
    p = Producer({"bootstrap.servers": stack.broker, "linger.ms": 20})
    value = b"x" * 1000
    for i in range(10_000):
        p.produce(topic, value, partition=0)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    proxy = stack.proxy
    pid = proxy.proc.pid
    # The proxy has served this partition once, so it knows the topic.
    ok = Consumer({"bootstrap.servers": proxy.bootstrap, "group.id": topic + ".warm",
                   "auto.offset.reset": "earliest"})
    ok.subscribe([topic])
    deadline = time.monotonic() + 60
    while (m := ok.poll(0.5)) is None or m.error():
        assert time.monotonic() < deadline, "warm-up consumer got nothing"
    ok.close()
    before = rss_kib(pid)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", proxy.node_port))
    s.setblocking(False)
    requests = 30  # ~10 MiB each: ~300 MiB of responses the client never reads
    sent = b"".join(fetch_v4(i, topic, 16 << 20) for i in range(requests))
    view = memoryview(sent)
    while view:
        try:
            n = s.send(view)
            view = view[n:]
        except BlockingIOError:
            time.sleep(0.05)
    # Watch the proxy while the responses pile up behind the client that does not read.
    peak = before
    samples = []
    end = time.monotonic() + 20
    while time.monotonic() < end:
        rss = rss_kib(pid)
        peak = max(peak, rss)
        samples.append(rss)
        time.sleep(0.5)
    grown_mib = (peak - before) / 1024
    print(f"slow reader: proxy RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB "
          f"(+{grown_mib:.1f} MiB) with {requests} fetch responses of ~10 MiB unread")
    # Other clients are still served meanwhile.
    other = Producer({"bootstrap.servers": proxy.bootstrap, "message.timeout.ms": 30000})
    done = []
    other.produce(topic + ".other", b"still served", on_delivery=lambda e, m: done.append(e))
    other.flush(30)
    assert done == [None]
    s.close()
    assert proxy.alive()
    assert grown_mib < SLOW_READER_BOUND_MIB, (
        f"proxy RSS grew by {grown_mib:.1f} MiB for a client that does not read: buffering")
