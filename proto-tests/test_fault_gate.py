"""The fault tests' TCP gate (``tcp_gate.py``) checked with real clients and the real
broker, without the proxy, before any fault test relies on it: traffic passes unchanged
(librdkafka and kafka-python produce and consume through it), a held Produce is not
acknowledged until it is released, a cut broker refuses connections until it is restored
and then serves the same data, and a response cut in the middle resets the connection
without losing a record for a consumer that reconnects."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from harness import Tansu, free_port
from poison_support import create_topic, read_topic
from tcp_gate import PRODUCE, Gate


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    gate_port = free_port()
    tansu = Tansu(port=free_port(), advertised_port=gate_port,
                  workdir=tmp_path_factory.mktemp("gate")).start()
    gate = Gate(("127.0.0.1", gate_port), ("127.0.0.1", tansu.port))
    try:
        yield gate
    finally:
        gate.close()
        tansu.stop()


def rdkafka_values(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count:
            assert time.monotonic() < deadline, f"read {len(out)} of {count}"
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m.value())
    finally:
        c.close()
    return out


def test_traffic_passes_unchanged(gated):
    topic = create_topic(gated.address, f"gate-pass-{uuid.uuid4().hex[:6]}", 1)
    values = [f"v{i}".encode() * 50 for i in range(300)]
    p = Producer({"bootstrap.servers": gated.address, "linger.ms": 5})
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0
    assert rdkafka_values(gated.address, topic, 300) == values
    kp = KafkaProducer(bootstrap_servers=gated.address)
    for v in values[:50]:
        kp.send(topic, v)
    kp.flush(30)
    kp.close()
    kc = KafkaConsumer(bootstrap_servers=gated.address, enable_auto_commit=False)
    kc.assign([KafkaTopicPartition(topic, 0)])
    kc.seek_to_beginning()
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 350:
        assert time.monotonic() < deadline, f"kafka-python read {len(got)} of 350"
        for batch in kc.poll(timeout_ms=200).values():
            got += [m.value for m in batch]
    kc.close()
    assert got == values + values[:50]
    assert any(r.api_key == PRODUCE and topic in r.topics for r in gated.seen)


def test_held_produce_is_acknowledged_only_after_release(gated):
    topic = create_topic(gated.address, f"gate-hold-{uuid.uuid4().hex[:6]}", 1)
    p = Producer({"bootstrap.servers": gated.address, "client.id": "held-producer",
                  "message.timeout.ms": 120000})
    p.list_topics(topic, timeout=10)  # connected before the hold
    gated.hold(lambda r: r.api_key == PRODUCE and r.client_id == "held-producer")
    delivered = []
    p.produce(topic, b"late", on_delivery=lambda e, m: delivered.append(e))
    deadline = time.monotonic() + 30
    while gated.held == 0:
        assert time.monotonic() < deadline, "the produce never reached the gate"
        p.poll(0.1)
    assert p.flush(1) == 1 and delivered == [], "acknowledged while held"
    assert read_topic(gated.address, topic, settle=0.5) == []
    gated.release()
    assert p.flush(30) == 0 and delivered == [None]
    assert [r.value for r in read_topic(gated.address, topic, at_least=1)] == [b"late"]


def test_cut_broker_comes_back_with_its_data(gated):
    topic = create_topic(gated.address, f"gate-cut-{uuid.uuid4().hex[:6]}", 1)
    p = Producer({"bootstrap.servers": gated.address, "message.timeout.ms": 120000})
    for i in range(100):
        p.produce(topic, f"a{i}".encode())
    assert p.flush(30) == 0
    gated.cut()
    delivered = []
    for i in range(100):
        p.produce(topic, f"b{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    deadline = time.monotonic() + 30
    while gated.refused == 0:
        assert time.monotonic() < deadline, "the producer never tried to reconnect"
        p.poll(0.2)
    assert delivered == []
    gated.restore()
    assert p.flush(60) == 0 and delivered == [None] * 100
    got = rdkafka_values(gated.address, topic, 200)
    assert got == [f"a{i}".encode() for i in range(100)] + [f"b{i}".encode() for i in range(100)]


def test_reset_mid_response_loses_nothing_for_a_reconnecting_consumer(gated):
    topic = create_topic(gated.address, f"gate-reset-{uuid.uuid4().hex[:6]}", 1)
    values = [f"r{i}".encode() * 100 for i in range(600)]
    # Small batches, so that the consumer needs many fetches.
    p = Producer({"bootstrap.servers": gated.address, "linger.ms": 5, "batch.num.messages": 20})
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0
    gated.reset_responses(every=4, min_bytes=2000)
    try:
        c = Consumer({"bootstrap.servers": gated.address, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest", "fetch.max.bytes": 20000, "message.max.bytes": 20000,
                      "max.partition.fetch.bytes": 20000})
        c.subscribe([topic])
        got: dict[int, bytes] = {}
        deadline = time.monotonic() + 240
        while len(got) < len(values):
            assert time.monotonic() < deadline, f"read {len(got)} of {len(values)}"
            m = c.poll(0.2)
            if m is not None and not m.error():
                got[m.offset()] = m.value()
        c.close()
    finally:
        gated.reset_responses(0, 0)
    assert gated.resets >= 3
    assert [got[o] for o in sorted(got)] == values
