"""kafka-python (a pure-Python client) through the proxy: topics, codecs, headers, group
commit and resume, rebalance, and addresses."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from harness import pids_connected_to
from records import CODECS, Rec, assert_offsets_dense, assert_same_records, make_records

FAST = {"fetch_max_wait_ms": 20, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
        "request_timeout_ms": 30000}


def produce(bootstrap: str, topic: str, records: list[Rec], codec: str | None = None,
            linger_ms: int = 5) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=linger_ms,
                      acks="all")
    try:
        futures = [p.send(topic, key=r.key, value=r.value, partition=r.partition,
                          headers=list(r.headers)) for r in records]
        p.flush(30)
        for f in futures:
            f.get(timeout=10)
    finally:
        p.close(timeout=10)


def to_rec(m) -> Rec:
    return Rec(m.partition, m.key, m.value, tuple((k, v) for k, v in m.headers), m.offset)


def consumer(bootstrap: str, group: str | None, **conf) -> KafkaConsumer:
    settings = {"auto_offset_reset": "earliest", "enable_auto_commit": False, **FAST, **conf}
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **settings)


def poll_until(consumers, done, timeout: float, sink: dict, max_records: int = 500) -> None:
    """Polls each consumer in turn into ``sink[index]`` until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for records"
        for i, c in enumerate(consumers):
            for batch in c.poll(timeout_ms=50, max_records=max_records).values():
                sink.setdefault(i, []).extend(to_rec(m) for m in batch)


def read_all(bootstrap: str, topic: str, partitions: int, count: int) -> list[Rec]:
    c = consumer(bootstrap, None)
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    c.seek_to_beginning()
    sink: dict[int, list[Rec]] = {}
    try:
        poll_until([c], lambda: len(sink.get(0, [])) >= count, 60, sink)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # a duplicate would show up now
            for batch in c.poll(timeout_ms=50).values():
                sink[0].extend(to_rec(m) for m in batch)
    finally:
        c.close()
    return sink.get(0, [])


def assert_proxy_address(stack, host: str, port: int) -> None:
    assert host == "127.0.0.1" and port in stack.allowed_ports(), (
        f"client was told about {host}:{port}; proxy ports are {stack.allowed_ports()}, "
        f"the broker is on {stack.tansu.port}")


def test_admin_creates_topic_with_partitions(stack, group_name):
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
    topic = group_name.replace(".g", ".t")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1)])
        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 5
        cluster = admin.describe_cluster()
        for b in cluster["brokers"]:
            assert_proxy_address(stack, b["host"], b["port"])
    finally:
        admin.close()


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(stack, new_topic, codec):
    topic = new_topic(partitions=3)
    sent = make_records(codec, 300, 3)
    produce(stack.bootstrap, topic, sent, codec=None if codec == "none" else codec)
    got = read_all(stack.bootstrap, topic, 3, len(sent))
    assert_same_records(sent, got)
    assert_offsets_dense(got)


def test_headers_round_trip(stack, new_topic):
    topic = new_topic(partitions=1)
    headers = (("empty", b""), ("bin", bytes(range(256))), ("dup", b"1"), ("dup", b"2"),
               ("ünïcode", "välue".encode()))
    sent = [Rec(0, None, b"no key", headers), Rec(0, b"k", None, ()),
            Rec(0, b"k2", b"v" * 100_000, headers)]
    produce(stack.bootstrap, topic, sent)
    got = read_all(stack.bootstrap, topic, 1, len(sent))
    assert [r.content() for r in got] == [r.content() for r in sent]


def test_group_commit_stop_restart_resumes(stack, new_topic, group_name):
    topic = new_topic(partitions=3)
    sent = make_records("resume", 600, 3)
    produce(stack.bootstrap, topic, sent, linger_ms=50)

    first = consumer(stack.bootstrap, group_name)
    processed: list[Rec] = []
    try:
        first.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(processed) < 250:
            assert time.monotonic() < deadline, "first consumer got too few records"
            for tp, batch in first.poll(timeout_ms=100, max_records=7).items():
                processed.extend(to_rec(m) for m in batch)
                first.commit({tp: OffsetAndMetadata(batch[-1].offset + 1, None, -1)})
        committed = {p: first.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        first.close()
    for p in range(3):
        offsets = [r.offset for r in processed if r.partition == p]
        assert committed[p] == (max(offsets) + 1 if offsets else None)

    second = consumer(stack.bootstrap, group_name)
    second.subscribe([topic])
    sink: dict[int, list[Rec]] = {}
    try:
        poll_until([second], lambda: len(sink.get(0, [])) >= len(sent) - len(processed),
                   60, sink)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            for batch in second.poll(timeout_ms=50).values():
                sink[0].extend(to_rec(m) for m in batch)
    finally:
        second.close()
    resumed = sink[0]
    for p in range(3):
        offsets = [r.offset for r in resumed if r.partition == p]
        if offsets:
            assert min(offsets) == (committed[p] or 0), f"partition {p} did not resume"
    assert_same_records(sent, processed + resumed)


class Tracker(ConsumerRebalanceListener):
    """Remembers a member's current assignment."""

    def __init__(self):
        self.partitions: list[int] = []

    def on_partitions_revoked(self, revoked):
        self.partitions = []

    def on_partitions_assigned(self, assigned):
        self.partitions = sorted(tp.partition for tp in assigned)


class Member(threading.Thread):
    """One group member polling in its own thread, as an application does.

    kafka-python joins and syncs only inside ``poll``; polling two members in turn from
    one thread lets one member's JoinGroup or SyncGroup wait on the other's turn, and on
    tansu (which holds JoinGroup for half the session timeout) that can chain rebalances
    for minutes. A thread per member keeps both joining at once.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, **conf):
        super().__init__(daemon=True)
        self.consumer = consumer(bootstrap, group, **conf)
        self.tracker = Tracker()
        self.topic = topic
        self.records: list[Rec] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.consumer.subscribe([self.topic], listener=self.tracker)
            while not self.stopping.is_set():
                for batch in self.consumer.poll(timeout_ms=100, max_records=10).values():
                    with self.lock:
                        self.records.extend(to_rec(m) for m in batch)
        except BaseException as e:  # surfaced by wait_for
            self.error = e
        finally:
            self.consumer.close()

    def received(self) -> list[Rec]:
        with self.lock:
            return list(self.records)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def wait_for(members: list[Member], done, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for m in members:
            assert m.error is None, f"a member's poll loop failed: {m.error!r}"
        assert time.monotonic() < deadline, (
            f"timed out after {timeout}s waiting for {what}; assignments "
            f"{[m.tracker.partitions for m in members]}, records "
            f"{[len(m.received()) for m in members]}")
        time.sleep(0.05)


def test_rebalance_between_two_members(stack, new_topic, group_name):
    topic = new_topic(partitions=4)
    conf = {"enable_auto_commit": True, "auto_commit_interval_ms": 200}
    a = Member(stack.bootstrap, group_name, topic, **conf)
    b = Member(stack.bootstrap, group_name, topic, **conf)
    try:
        a.start()
        wait_for([a], lambda: len(a.tracker.partitions) == 4, 40, "the first assignment")
        first = make_records("before", 200, 4)
        produce(stack.bootstrap, topic, first)
        wait_for([a], lambda: len(a.received()) >= 50, 30, "records before the rebalance")

        b.start()
        wait_for([a, b], lambda: a.tracker.partitions and b.tracker.partitions, 50,
                 "both members to hold partitions")
        assert sorted(a.tracker.partitions + b.tracker.partitions) == [0, 1, 2, 3]
        second = make_records("after", 200, 4)
        produce(stack.bootstrap, topic, second)

        want = {r.content() for r in first + second}
        wait_for([a, b],
                 lambda: want <= {r.content() for m in (a, b) for r in m.received()}, 30,
                 "every record")
        after_b = [r for r in b.received() if r.value.startswith(b"after")]
        assert after_b, "the second member received none of the new records"
        assert {r.partition for r in after_b} <= set(b.tracker.partitions)
    finally:
        a.stop()
        b.stop()


def test_metadata_names_only_proxy_addresses(stack, new_topic, group_name):
    topic = new_topic(partitions=2)
    produce(stack.bootstrap, topic, make_records("md", 10, 2))
    c = consumer(stack.bootstrap, group_name)
    c.subscribe([topic])
    sink: dict[int, list[Rec]] = {}
    try:
        poll_until([c], lambda: len(sink.get(0, [])) >= 10, 60, sink)
        c.commit()
        cluster = c._client.cluster  # the client's own view, from Metadata responses
        brokers = cluster.brokers()
        assert brokers
        for b in brokers:
            assert_proxy_address(stack, b.host, b.port)
        coordinator_id = c._coordinator.coordinator_id
        assert coordinator_id is not None
        coordinator = cluster.broker_metadata(coordinator_id)  # from FindCoordinator
        assert_proxy_address(stack, coordinator.host, coordinator.port)
        if stack.proxy is not None:
            direct = pids_connected_to(stack.tansu.port) - {stack.proxy.proc.pid}
            assert direct == set(), f"processes {direct} bypass the proxy"
    finally:
        c.close()
