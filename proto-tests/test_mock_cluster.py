"""Share groups (KIP-932) and KIP-848 groups through the proxy, against librdkafka's mock
cluster as the broker.

tansu 0.6.0 speaks neither share-group APIs nor ConsumerGroupHeartbeat, and no broker that
does installs here. librdkafka's own mock cluster (``test.mock.num.brokers``) is a
Kafka-compatible broker in C, listening on real TCP ports, that the librdkafka project
tests its clients against. It speaks ShareGroupHeartbeat, ShareFetch and ShareAcknowledge
v1, ConsumerGroupHeartbeat v1 (its own KIP-848 coordinator, written apart from this
project's ``kip848_gate``), Fetch up to v16 and Produce up to v10; it has no CreateTopics,
makes topics (four partitions) on first produce, and keeps nothing on disk. Three brokers,
so consumers meet several brokers through the proxy's node listeners. The topics the
proxy needs (its state topic, the DLQ) are made beforehand, as an operator would on a
cluster where the sidecar may not create topics.

- Share groups, with librdkafka's share consumer (a preview in librdkafka 2.16,
  ``confluent_kafka.ShareConsumer``): the proxy passes the APIs through (not stripped from
  ApiVersions), keeps the addresses its own, and never diverts or hides a record of a share
  group, whose deliveries the broker counts itself.
- A KIP-848 group (librdkafka ``group.protocol=consumer``) crash-looping on two poison
  records: both are found, written to the DLQ and hidden, with the mock's coordinator
  instead of the test gate; every record counted.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient

from apps.supervisor import start_app
from poison_support import (REASONS, WatchedQuarantine, check_dead_letter, check_nothing_lost,
                            diagnose, end_offsets, is_poison, metric_for, order_items,
                            partition_count, produce, quarantined, read_topic, wait_caught_up,
                            watch_yaml)

BROKERS = 3
STATE_TOPIC = "__quarantine_state"
KIP848_TOPIC = f"orders-kip848-{uuid.uuid4().hex[:8]}"
OPERATOR = b"made-by-the-operator"


class MockCluster:
    """librdkafka's mock cluster, alive as long as the client that made it."""

    def __init__(self, brokers: int):
        self._owner = Producer({"test.mock.num.brokers": brokers, "log_level": 3})
        md = self._owner.list_topics(timeout=10)
        self.addresses = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
        assert len(self.addresses) == brokers, md.brokers

    @property
    def bootstrap(self) -> str:
        return ",".join(self.addresses)

    def close(self) -> None:
        self._owner.flush(5)
        self._owner = None


@pytest.fixture(scope="module")
def mock():
    cluster = MockCluster(BROKERS)
    # The operator's topics (the mock has no CreateTopics: a first produce makes one).
    p = Producer({"bootstrap.servers": cluster.bootstrap})
    for topic in (STATE_TOPIC, f"{KIP848_TOPIC}.dlq"):
        p.produce(topic, key=OPERATOR, value=None)
    assert p.flush(10) == 0
    yield cluster
    cluster.close()


def node_port_base(node_ids: range) -> int:
    """A ``node_port_base`` such that ``base + id`` is free for every node id."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1] - node_ids[0]
        try:
            for node in node_ids:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + node))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for the per-node listeners")


@pytest.fixture(scope="module")
def proxy(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("share-groups")
    # The mock's brokers are nodes 1..BROKERS.
    q = WatchedQuarantine(upstream=mock.addresses[0], node_port_base=node_port_base(
                              range(1, BROKERS + 1)),
                          extra_yaml=watch_yaml(max_deliveries=2, isolation_idle_timeout="5s"),
                          workdir=workdir)
    q.start()
    yield q
    q.stop()


def share_consumer(bootstrap: str, group: str, **conf) -> ShareConsumer:
    return ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group,
                          "log_level": 3, **conf})


def join(consumers: list[ShareConsumer], producer: Producer, topic: str,
         timeout: float = 60) -> None:
    """Subscribes and polls until the group receives records (a share group starts at the
    log end): warm-up records are produced until one arrives, and acknowledged. The topic
    is made first (by a first produce): a share consumer that subscribes to a topic not
    yet there waits for its next metadata refresh."""
    producer.produce(topic, value=b"warm-up")
    assert producer.flush(10) == 0
    for c in consumers:
        c.subscribe([topic])
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "the share group never received a record"
        producer.produce(topic, value=b"warm-up")
        producer.flush(10)
        got = [m for c in consumers for m in c.poll(0.5) if m.error() is None]
        if got:
            return


def drain(consumers: list[ShareConsumer], want: set[bytes], timeout: float = 60,
          on_message=None) -> dict[bytes, list[tuple[int, int]]]:
    """Polls until every value in ``want`` was delivered; value -> [(partition, offset)] of
    each delivery (warm-up records are skipped)."""
    seen: dict[bytes, list[tuple[int, int]]] = {}
    deadline = time.monotonic() + timeout
    while not want <= set(seen):
        assert time.monotonic() < deadline, f"{len(want - set(seen))} of {len(want)} never came"
        for c in consumers:
            for m in c.poll(0.2):
                if m.error() is not None:
                    continue
                if on_message is not None:
                    on_message(c, m)
                if m.value() != b"warm-up":
                    seen.setdefault(m.value(), []).append((m.partition(), m.offset()))
    return seen


def test_share_consumers_work_through_the_proxy(mock, proxy):
    topic = f"share-{uuid.uuid4().hex[:8]}"
    group = f"{topic}.sg"
    producer = Producer({"bootstrap.servers": proxy.bootstrap, "linger.ms": 5})
    consumers = [share_consumer(proxy.bootstrap, group) for _ in range(2)]
    try:
        join(consumers, producer, topic)
        count = partition_count(proxy.bootstrap, topic)
        assert count and count > 1, f"{topic}: {count} partitions"
        values = {f"order-{i}".encode() for i in range(300)}
        for i, v in enumerate(sorted(values)):
            producer.produce(topic, value=v, partition=i % count)
        assert producer.flush(30) == 0
        seen = drain(consumers, values)
    finally:
        for c in consumers:
            c.close()
    # Every record came, each once (implicit acknowledgement accepted them).
    assert set(seen) == values
    again = {v: at for v, at in seen.items() if len(at) > 1}
    assert not again, f"records delivered twice: {list(again.items())[:5]}"
    partitions = {p for at in seen.values() for p, _ in at}
    assert partitions == set(range(count))

    # Through the proxy's addresses only.
    md = AdminClient({"bootstrap.servers": proxy.bootstrap}).list_topics(timeout=10)
    assert sorted((b.host, b.port) for b in md.brokers.values()) == [
        ("127.0.0.1", proxy.node_port_base + node) for node in range(1, BROKERS + 1)]
    # (Which brokers lead the partitions is the mock's choice: often several, not always.)
    leaders = {md.topics[topic].partitions[p].leader for p in partitions}
    print(f"{len(partitions)} partitions led by brokers {sorted(leaders)}")

    # The share-group APIs went through, and nothing was judged.
    for api in ("ShareGroupHeartbeat", "ShareFetch"):
        assert metric_for(proxy, "quarantine_requests_total", api=api) > 0, api
    assert metric_for(proxy, "quarantine_records_diverted_total", group=group) == 0
    assert [q for q in quarantined(proxy) if q["group"] == group] == []


def test_a_record_the_share_consumer_keeps_releasing_is_left_to_the_broker(mock, proxy):
    """An application that fails on one record and releases it each time: the broker
    redelivers it (and counts the deliveries itself); the proxy neither hides nor diverts
    it, and every other record is accepted once."""
    topic = f"share-poison-{uuid.uuid4().hex[:8]}"
    group = f"{topic}.sg"
    producer = Producer({"bootstrap.servers": proxy.bootstrap, "linger.ms": 5})
    consumer = share_consumer(proxy.bootstrap, group, **{"share.acknowledgement.mode":
                                                         "explicit"})

    def acknowledge(c, m):
        failed = m.value() == b"poison"
        c.acknowledge(m, AcknowledgeType.RELEASE if failed else AcknowledgeType.ACCEPT)

    try:
        producer.produce(topic, value=b"warm-up")  # the topic first (see join)
        assert producer.flush(10) == 0
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        joined = False
        while not joined:
            assert time.monotonic() < deadline, "the share group never received a record"
            producer.produce(topic, value=b"warm-up")
            producer.flush(10)
            for m in consumer.poll(0.5):
                if m.error() is None:
                    acknowledge(consumer, m)
                    joined = True
        values = {f"order-{i}".encode() for i in range(40)} | {b"poison"}
        for v in sorted(values):
            producer.produce(topic, value=v)
        assert producer.flush(30) == 0
        seen = drain([consumer], values, on_message=acknowledge)
        # Give the broker time to hand the released record out again.
        end = time.monotonic() + 20
        while len(seen[b"poison"]) < 3 and time.monotonic() < end:
            for m in consumer.poll(0.2):
                if m.error() is None:
                    acknowledge(consumer, m)
                    if m.value() == b"poison":
                        seen[b"poison"].append((m.partition(), m.offset()))
        consumer.commit_sync(10)
    finally:
        consumer.close()
    poison_at = set(seen[b"poison"])
    assert len(poison_at) == 1, f"one record, redelivered in place: {poison_at}"
    assert len(seen[b"poison"]) >= 2, "the broker never redelivered the released record"
    assert all(len(at) == 1 for v, at in seen.items() if v != b"poison")
    # Nothing of the share group was judged by the proxy.
    assert metric_for(proxy, "quarantine_records_diverted_total", group=group) == 0
    assert [q for q in quarantined(proxy) if q["group"] == group] == []
    assert partition_count(mock.bootstrap, f"{topic}.dlq") is None


class MockStack:
    """What the poison_support helpers take: the proxy, and the broker read directly."""

    def __init__(self, mock: MockCluster, proxy: WatchedQuarantine):
        self.proxy, self.broker, self.bootstrap = proxy, mock.bootstrap, proxy.bootstrap
        self.group_protocol = "consumer"


def test_kip848_group_with_the_mocks_coordinator_has_its_poison_records_diverted(
        mock, proxy, tmp_path):
    stack = MockStack(mock, proxy)
    dlq = f"{KIP848_TOPIC}.dlq"
    partitions = partition_count(proxy.bootstrap, dlq)
    produced = produce(proxy.bootstrap, KIP848_TOPIC,
                       order_items(partitions, 40, poison={(0, 20), (2, 7)}))
    poison = sorted((r for r in produced if is_poison(r.value)), key=lambda r: r.at)
    assert partition_count(proxy.bootstrap, KIP848_TOPIC) == partitions
    group = KIP848_TOPIC + ".g"
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=KIP848_TOPIC, group=group,
                    mode="crash", close_on_crash=True, commit="each")
    try:
        wait_caught_up(stack, group, KIP848_TOPIC, end_offsets(produced, partitions), 180,
                       diagnose(stack, app))
    finally:
        app.stop()
    check_nothing_lost(produced, app.processed(), poison)
    assert set(app.poison_seen()) == {p.at for p in poison}
    letters = [r for r in read_topic(mock.bootstrap, dlq, at_least=len(poison) + 1)
               if r.key != OPERATOR]
    origins = sorted((int(r.header("__connect.errors.partition")),
                      int(r.header("__connect.errors.offset"))) for r in letters)
    assert origins == [p.at for p in poison], f"{dlq} holds {origins}"
    # The mock stamps records with its append time: compare with the records as served.
    served = {(r.partition, r.offset): r
              for r in read_topic(mock.bootstrap, KIP848_TOPIC, at_least=len(produced))}
    by_at = {p.at: dataclasses.replace(p, timestamp=served[p.at].timestamp) for p in poison}
    for letter in letters:
        at = (int(letter.header("__connect.errors.partition")),
              int(letter.header("__connect.errors.offset")))
        check_dead_letter(letter, by_at[at], KIP848_TOPIC, group, REASONS)
    hidden = {(q["partition"], q["offset"]) for q in quarantined(proxy) if q["group"] == group}
    assert hidden == {p.at for p in poison}
    # The members joined with ConsumerGroupHeartbeat (the mock answered them), not JoinGroup.
    assert metric_for(proxy, "quarantine_requests_total", api="ConsumerGroupHeartbeat") > 0
    assert metric_for(proxy, "quarantine_requests_total", api="JoinGroup") == 0
