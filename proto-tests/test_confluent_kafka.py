"""librdkafka (confluent-kafka) through the proxy: topics, codecs, headers, group commit and
resume, rebalance, and addresses. Runs once per group protocol: classic, and KIP-848
(``group.protocol=consumer``, the broker behind the test-only KIP-848 gate)."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient

from conftest import BOTH_GROUP_PROTOCOLS, rdkafka_group_conf
from harness import pids_connected_to
from records import CODECS, Rec, assert_offsets_dense, assert_same_records, make_records


def produce(bootstrap: str, topic: str, records: list[Rec], **conf) -> None:
    """Produces ``records`` to their partitions and waits for every delivery report."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    for r in records:
        p.produce(topic, key=r.key, value=r.value, headers=list(r.headers),
                  partition=r.partition,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(30) == 0, "records still in the producer queue after 30 s"
    assert not errors, f"delivery failed: {errors[:3]}"


def to_rec(msg) -> Rec:
    headers = tuple((k, v) for k, v in (msg.headers() or []))
    return Rec(msg.partition(), msg.key(), msg.value(), headers, msg.offset())


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


def consumer(bootstrap: str, group: str, group_protocol: str = "classic", **conf) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     **rdkafka_group_conf(group_protocol), **conf})


def poll_until(consumers: list[Consumer], done, timeout: float, sink: dict) -> None:
    """Polls each consumer in turn, appending records to ``sink[index]``, until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for records"
        for i, c in enumerate(consumers):
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            sink.setdefault(i, []).append(to_rec(msg))


def read_all(bootstrap: str, topic: str, partitions: int, count: int, group: str) -> list[Rec]:
    """Reads ``count`` records from the beginning of every partition, without a group."""
    c = consumer(bootstrap, group)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    sink: dict[int, list[Rec]] = {}
    try:
        poll_until([c], lambda: len(sink.get(0, [])) >= count, 60, sink)
        # Anything beyond `count` would be a duplicate: give it a moment to show up.
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            msg = c.poll(0.05)
            if msg is not None and not msg.error():
                sink[0].append(to_rec(msg))
    finally:
        c.close()
    return sink.get(0, [])


def assert_proxy_address(stack, host: str, port: int) -> None:
    assert host == "127.0.0.1" and port in stack.allowed_ports(), (
        f"client was told about {host}:{port}; proxy ports are {stack.allowed_ports()}, "
        f"the broker is on {stack.broker_port}")


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(stack, new_topic, group_name, codec):
    topic = new_topic(partitions=3)
    sent = make_records(codec, 300, 3)
    produce(stack.bootstrap, topic, sent, **{"compression.type": codec})
    got = read_all(stack.bootstrap, topic, 3, len(sent), group_name)
    assert_same_records(sent, got)
    assert_offsets_dense(got)


def test_headers_round_trip(stack, new_topic, group_name):
    topic = new_topic(partitions=1)
    headers = (("empty", b""), ("none", None), ("bin", bytes(range(256))),
               ("dup", b"1"), ("dup", b"2"), ("ünïcode", "välue".encode()))
    sent = [Rec(0, None, b"no key", headers), Rec(0, b"k", None, ()),
            Rec(0, b"k2", b"v" * 100_000, headers)]
    produce(stack.bootstrap, topic, sent)
    got = read_all(stack.bootstrap, topic, 1, len(sent), group_name)
    assert [r.content() for r in got] == [r.content() for r in sent]


def test_group_commit_stop_restart_resumes(stack, new_topic, group_name):
    topic = new_topic(partitions=3)
    sent = make_records("resume", 600, 3)
    produce(stack.bootstrap, topic, sent, **{"linger.ms": 50})  # multi-record batches

    first = consumer(stack.bootstrap, group_name, stack.group_protocol)
    processed: list[Rec] = []
    try:
        first.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(processed) < 250:
            assert time.monotonic() < deadline, "first consumer got too few records"
            msg = first.poll(0.1)
            if msg is None or msg.error():
                continue
            processed.append(to_rec(msg))
            first.commit(message=msg, asynchronous=False)
        committed = {tp.partition: tp.offset for tp in first.committed(
            [TopicPartition(topic, p) for p in range(3)], timeout=10)}
    finally:
        first.close()
    expected = {p: 1 + max((r.offset for r in processed if r.partition == p), default=-1)
                for p in range(3)}
    expected = {p: o if o > 0 else -1001 for p, o in expected.items()}  # -1001: no commit
    assert committed == expected

    second = consumer(stack.bootstrap, group_name, stack.group_protocol)
    second.subscribe([topic])
    sink: dict[int, list[Rec]] = {}
    try:
        poll_until([second], lambda: len(sink.get(0, [])) >= len(sent) - len(processed),
                   60, sink)
    finally:
        second.close()
    resumed = sink[0]
    for p in range(3):
        offsets = [r.offset for r in resumed if r.partition == p]
        if offsets:
            assert min(offsets) == max(committed[p], 0), f"partition {p} did not resume"
    assert_same_records(sent, processed + resumed)


def test_rebalance_between_two_members(stack, new_topic, group_name):
    topic = new_topic(partitions=4)
    assignments: dict[int, list[int]] = {0: [], 1: []}

    # Additions and removals: the classic protocol's eager rebalance revokes and assigns
    # everything, KIP-848's is incremental (only what moves).
    def on_assign(index):
        def cb(c, partitions):
            assignments[index] = sorted(set(assignments[index])
                                        | {tp.partition for tp in partitions})
        return cb

    def on_revoke(index):
        def cb(c, partitions):
            assignments[index] = sorted(set(assignments[index])
                                        - {tp.partition for tp in partitions})
        return cb

    auto_commit = {"enable.auto.commit": True, "auto.commit.interval.ms": 200}
    a = consumer(stack.bootstrap, group_name, stack.group_protocol, **auto_commit)
    b = consumer(stack.bootstrap, group_name, stack.group_protocol, **auto_commit)
    sink: dict[int, list[Rec]] = {}
    try:
        a.subscribe([topic], on_assign=on_assign(0), on_revoke=on_revoke(0))
        poll_until([a], lambda: len(assignments[0]) == 4, 60, sink)
        first = make_records("before", 200, 4)
        produce(stack.bootstrap, topic, first)
        poll_until([a], lambda: len(sink.get(0, [])) >= 50, 60, sink)

        b.subscribe([topic], on_assign=on_assign(1), on_revoke=on_revoke(1))
        poll_until([a, b], lambda: assignments[0] and assignments[1], 60, sink)
        assert sorted(assignments[0] + assignments[1]) == [0, 1, 2, 3]
        second = make_records("after", 200, 4)
        produce(stack.bootstrap, topic, second)

        def seen() -> set:
            return {r.content() for recs in sink.values() for r in recs}
        want = {r.content() for r in first + second}
        poll_until([a, b], lambda: want <= seen(), 60, sink)
        after_b = [r for r in sink.get(1, []) if r.value.startswith(b"after")]
        assert after_b, "the second member received none of the new records"
        assert {r.partition for r in after_b} <= set(assignments[1])
    finally:
        a.close()
        b.close()


def test_metadata_names_only_proxy_addresses(stack, new_topic, group_name):
    topic = new_topic(partitions=2)
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    md = admin.list_topics(timeout=10)
    assert md.brokers, "no brokers in Metadata"
    for b in md.brokers.values():
        assert_proxy_address(stack, b.host, b.port)
    for p in md.topics[topic].partitions.values():
        assert p.leader in md.brokers

    cluster = admin.describe_cluster(request_timeout=10).result()
    for node in cluster.nodes + [cluster.controller]:
        assert_proxy_address(stack, node.host, node.port)

    produce(stack.bootstrap, topic, make_records("md", 10, 2))
    c = consumer(stack.bootstrap, group_name, stack.group_protocol)
    c.subscribe([topic])
    sink: dict[int, list[Rec]] = {}
    try:
        poll_until([c], lambda: len(sink.get(0, [])) >= 10, 60, sink)
        c.commit(asynchronous=False)
        groups = admin.describe_consumer_groups([group_name], request_timeout=10)
        description = groups[group_name].result()
        assert_proxy_address(stack, description.coordinator.host,
                             description.coordinator.port)
        if stack.proxy is not None:
            # While producer, consumer and admin connections are open, nothing but the
            # proxy holds a connection to the broker.
            # (The KIP-848 gate runs in this process: under it, nothing but the proxy
            # holds a connection to the gate, which clients take for the broker.)
            direct = pids_connected_to(stack.broker_port) - {stack.proxy.proc.pid}
            assert direct == set(), f"processes {direct} bypass the proxy"
            assert os.getpid() not in pids_connected_to(stack.broker_port)
    finally:
        c.close()
