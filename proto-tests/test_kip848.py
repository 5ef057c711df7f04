"""KIP-848 consumers (``group.protocol=consumer``) and share-group APIs, with librdkafka.

tansu answers ConsumerGroupHeartbeat with UNSUPPORTED_VERSION, so the broker here sits
behind ``kip848_gate``, a test-only KIP-848 group coordinator (see its docstring for what it
covers). Every client test runs twice: against the gate directly (to trust the gate), then
through the proxy in front of it. The poison cases run through the proxy only.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire as wire
from apps.supervisor import start_app
from harness import Tansu, free_port
from kip848_gate import Group, Kip848Gate, Member, Reader, assign, c_len, c_str, pairs
from poison_support import (REASONS, Offsets, WatchedQuarantine, check_dlq, check_nothing_lost,
                            diagnose, end_offsets, is_poison, metric_for, order_items,
                            produce, quarantined, wait_caught_up, wait_for,
                            watch_yaml)

SHARE_GROUP_HEARTBEAT, SHARE_FETCH, SHARE_ACKNOWLEDGE = 76, 78, 79
# Canned answers the gate gives to the share-group APIs (tansu does not speak them): the
# tests check the proxy passes requests and answers byte for byte.
CANNED = {
    SHARE_GROUP_HEARTBEAT: struct.pack(">ih", 0, 0) + c_str(None) + c_str("ab")
    + struct.pack(">ii", 7, 500) + b"\xff" + b"\x00",
    SHARE_FETCH: struct.pack(">ih", 0, 0) + c_str(None) + struct.pack(">i", 15000) + b"\x01"
    + b"\x01" + b"\x00",
    SHARE_ACKNOWLEDGE: struct.pack(">ih", 0, 0) + b"\x00" + b"\x01" + b"\x01" + b"\x00",
}
GATE_SESSION_MS = 3000

CONSUMER = {"group.protocol": "consumer", "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "fetch.wait.max.ms": 20,
            "topic.metadata.refresh.interval.ms": 5000}


class Kip848Stack:
    """tansu, the KIP-848 gate the broker advertises as itself, and a watching proxy in
    front of the gate."""

    def __init__(self, workdir, watch: str, session_timeout_ms: int = GATE_SESSION_MS):
        tansu_port = free_port()
        self.gate = Kip848Gate("127.0.0.1", tansu_port, session_timeout_ms=session_timeout_ms,
                               extra_apis={k: (1, 1) for k in CANNED}, canned=CANNED).start()
        self.tansu = Tansu(port=tansu_port, advertised_port=self.gate.port,
                           workdir=workdir / "tansu")
        self.tansu.workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "quarantine").mkdir(parents=True, exist_ok=True)
        self.proxy = WatchedQuarantine(upstream=self.gate.address, extra_yaml=watch,
                                       workdir=workdir / "quarantine")

    def start(self) -> "Kip848Stack":
        self.tansu.start()
        try:
            self.proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.proxy.stop()
        self.tansu.stop()
        self.gate.stop()

    @property
    def bootstrap(self) -> str:
        return self.proxy.bootstrap

    @property
    def broker(self) -> str:
        """The broker as clients would reach it without the proxy: the gate."""
        return self.gate.address

    def log_tails(self) -> str:
        from harness import _tail
        return (f"--- gate ---\n{self.gate.summary()}\n--- tansu log ---\n"
                f"{_tail(self.tansu.log_path)}\n--- quarantine log ---\n"
                f"{_tail(self.proxy.log_path, 60)}\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Kip848Stack(tmp_path_factory.mktemp("kip848"),
                    watch_yaml(max_deliveries=2, isolation_idle_timeout="5s")).start()
    yield s
    s.stop()


@pytest.fixture(params=["direct", "proxy"])
def via(request, stack) -> str:
    """Where clients connect: the gate itself, or the proxy in front of it."""
    return stack.broker if request.param == "direct" else stack.bootstrap


def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"kip848-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10).values():
        f.result(timeout=15)
    return name


def produce_values(bootstrap: str, topic: str, partitions: int, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        p.produce(topic, v, partition=i % partitions)
    assert p.flush(30) == 0


def committed(stack: Kip848Stack, group: str, topic: str, partitions: int) -> dict[int, int]:
    offsets = Offsets(stack.broker, group)
    try:
        return offsets.committed(topic, partitions)
    finally:
        offsets.close()


def drain(consumers: list[Consumer], want: int, timeout: float = 90,
          commit: bool = True) -> list[tuple[int, int, bytes]]:
    """Polls ``consumers`` in turn, committing each record, until ``want`` records came."""
    got: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < deadline, f"read {len(got)} of {want} records"
        for c in consumers:
            msg = c.poll(0.05)
            if msg is None or msg.error():
                continue
            got.append((msg.partition(), msg.offset(), msg.value()))
            if commit:
                c.commit(message=msg, asynchronous=False)
    return got


# --- the gate's assignors (pure logic) --------------------------------------------------------

def group_of(subscriptions: dict[str, list[str]], topics: dict[str, int]) -> Group:
    g = Group("g", metadata={name: (bytes([i + 1]) * 16, n)
                             for i, (name, n) in enumerate(sorted(topics.items()))})
    for mid, subscribed in subscriptions.items():
        g.members[mid] = Member(mid, None, "c", subscribed, 30000, None)
    return g


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_assignors_cover_every_partition_once(assignor):
    g = group_of({"a": ["x", "y"], "b": ["x"], "c": ["x", "y"]}, {"x": 5, "y": 3})
    target = assign(g, assignor)
    owned = [tp for m in target.values() for tp in pairs(m)]
    assert len(owned) == len(set(owned)) == 8
    y = g.metadata["y"][0]
    assert not any(t == y for t, _ in pairs(target["b"])), "b got a topic it did not subscribe"
    sizes = sorted(len(pairs(m)) for m in target.values())
    assert sizes[-1] - sizes[0] <= 1 if assignor == "uniform" else sum(sizes) == 8


def test_uniform_is_sticky_when_a_member_joins():
    g = group_of({"a": ["x"], "b": ["x"]}, {"x": 6})
    g.target = assign(g, "uniform")
    before = {m: pairs(a) for m, a in g.target.items()}
    g.members["c"] = Member("c", None, "c", ["x"], 30000, None)
    after = {m: pairs(a) for m, a in assign(g, "uniform").items()}
    assert [len(after[m]) for m in "abc"] == [2, 2, 2]
    # a and b only gave partitions up; nothing moved between them.
    assert after["a"] <= before["a"] and after["b"] <= before["b"]


# --- the basic consumer flow, direct and through the proxy ------------------------------------

@pytest.mark.timeout(180)
def test_consume_commit_restart_resume(stack, via):
    topic = new_topic(via, 3)
    group = topic + ".g"
    first = [f"a{i}".encode() for i in range(60)]
    produce_values(via, topic, 3, first)
    c = Consumer({"bootstrap.servers": via, "group.id": group, **CONSUMER})
    c.subscribe([topic])
    try:
        got = drain([c], 60)
    finally:
        c.close()
    assert sorted(v for _, _, v in got) == sorted(first)
    assert committed(stack, group, topic, 3) == {0: 20, 1: 20, 2: 20}
    assert stack.gate.members(group) == {}, "close() did not send the leave heartbeat"

    second = [f"b{i}".encode() for i in range(30)]
    produce_values(via, topic, 3, second)
    c = Consumer({"bootstrap.servers": via, "group.id": group, **CONSUMER})
    c.subscribe([topic])
    try:
        got = drain([c], 30)
    finally:
        c.close()
    # Resumed from the commits: exactly the new records, none of the first run again.
    assert sorted(v for _, _, v in got) == sorted(second)
    assert committed(stack, group, topic, 3) == {0: 30, 1: 30, 2: 30}


@pytest.mark.timeout(240)
def test_two_members_rebalance(stack, via):
    topic = new_topic(via, 4)
    group = topic + ".g"
    a = Consumer({"bootstrap.servers": via, "group.id": group, "client.id": "member-a",
                  **CONSUMER})
    b = Consumer({"bootstrap.servers": via, "group.id": group, "client.id": "member-b",
                  **CONSUMER})
    gate = stack.gate

    def assignments() -> list[list[tuple[str, int]]]:
        ms = gate.members(group).values()
        return [sorted((t, p) for t, ps in m["assigned"].items() for p in ps)
                for m in ms if m["state"] == "stable"]

    try:
        a.subscribe([topic])
        wait_for(lambda: (a.poll(0.05), [len(x) for x in assignments()] == [4])[1], 60,
                 "the first member to own all 4 partitions", gate.summary)
        b.subscribe([topic])

        def balanced() -> bool:
            a.poll(0.05)
            b.poll(0.05)
            sizes = sorted(len(x) for x in assignments())
            return sizes == [2, 2] and len(gate.members(group)) == 2
        wait_for(balanced, 90, "two members with two partitions each", gate.summary)
        owned = assignments()
        assert not set(owned[0]) & set(owned[1]), f"a partition owned twice: {owned}"
        # The gate moved partitions only after the first member revoked them.
        assert any("revoke" in e for g, _m, e in gate.events if g == group), gate.summary()

        values = [f"r{i}".encode() for i in range(80)]
        produce_values(via, topic, 4, values)
        got = drain([a, b], 80)
        assert sorted(v for _, _, v in got) == sorted(values)

        b.close()
        wait_for(lambda: (a.poll(0.05), [len(x) for x in assignments()] == [4])[1], 60,
                 "the remaining member to own all 4 partitions again", gate.summary)
        more = [f"s{i}".encode() for i in range(20)]
        produce_values(via, topic, 4, more)
        got = drain([a], 20)
        assert sorted(v for _, _, v in got) == sorted(more)
        assert committed(stack, group, topic, 4) == {p: 25 for p in range(4)}
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(180)
def test_static_member_keeps_its_place(stack, via):
    """A static member (``group.instance.id``) closes with the epoch -2 heartbeat; started
    again with the same instance id, it takes its place back: same partitions, no group
    epoch bump, and it resumes from its commits."""
    topic = new_topic(via, 2)
    group = topic + ".g"
    values = [f"v{i}".encode() for i in range(40)]
    produce_values(via, topic, 2, values)
    conf = {"bootstrap.servers": via, "group.id": group, "group.instance.id": "orders-0",
            **CONSUMER}
    c = Consumer(conf)
    c.subscribe([topic])
    try:
        got = drain([c], 20)
    finally:
        c.close()
    (member,) = stack.gate.members(group).values()
    assert member["epoch"] == -2, f"static member did not leave with epoch -2: {member}"
    epoch_before = stack.gate.group_epoch(group)
    c = Consumer(conf)
    c.subscribe([topic])
    try:
        got += drain([c], 20)
    finally:
        c.close()
    assert sorted(v for _, _, v in got) == sorted(values)
    assert any(g == group and e.startswith("replaces") for g, _m, e in stack.gate.events)
    assert stack.gate.group_epoch(group) == epoch_before


# --- the member-epoch checks, raw -----------------------------------------------------------

def flexible_request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A size-prefixed request with header v2 (client id, then tagged fields)."""
    cid = b"kip848-raw"
    payload = struct.pack(">hhih", api_key, version, correlation_id, len(cid)) + cid + b"\x00"
    payload += body
    return struct.pack(">i", len(payload)) + payload


def roundtrip(sock: socket.socket, req: bytes) -> Reader:
    sock.sendall(req)
    resp = wire.read_frame(sock)
    assert resp is not None, "connection closed"
    r = Reader(resp)
    r.i32()
    r.tags()
    return r


def heartbeat(sock, group: str, member: str, epoch: int, topics: list[str] | None,
              owned: list | None = None) -> tuple[int, str | None, int]:
    body = c_str(group) + c_str(member) + struct.pack(">i", epoch) + c_str(None) + c_str(None)
    body += struct.pack(">i", 30000)
    body += c_len(None if topics is None else len(topics))
    body += b"".join(c_str(t) for t in topics or [])
    body += c_str(None)  # regex (v1)
    body += c_str(None)  # server assignor
    body += c_len(None if owned is None else len(owned))
    for tid, parts in owned or []:
        body += tid + c_len(len(parts)) + b"".join(struct.pack(">i", p) for p in parts) + b"\x00"
    body += b"\x00"
    r = roundtrip(sock, flexible_request(68, 1, 1, body))
    r.i32()
    error = r.i16()
    r.string(True)
    member_id = r.string(True)
    return error, member_id, r.i32()


def offset_commit_v(sock, version: int, group: str, member: str, epoch: int, topic: str,
                    offset: int) -> int:
    """OffsetCommit (v8/v9, flexible) of one partition; its error code."""
    body = c_str(group) + struct.pack(">i", epoch) + c_str(member) + c_str(None)
    body += c_len(1) + c_str(topic) + c_len(1) + struct.pack(">iqi", 0, offset, -1)
    body += c_str(None) + b"\x00" + b"\x00" + b"\x00"
    r = roundtrip(sock, flexible_request(8, version, 2, body))
    r.i32()
    assert r.array_len(True) == 1
    r.string(True)
    assert r.array_len(True) == 1
    r.i32()
    return r.i16()


@pytest.mark.timeout(120)
def test_member_epoch_checks_raw(stack, via):
    topic = new_topic(via, 1)
    group = topic + ".g"
    host, port = via.split(":")
    member = uuid.uuid4().hex
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        error, got_member, epoch = heartbeat(sock, group, member, 0, [topic])
        assert (error, got_member) == (0, member)
        assert epoch >= 1
        # The assignment arrives by topic id; acknowledge it as a client would.
        assignment = stack.gate.members(group)[member]["assigned"]
        owned = [(bytes.fromhex(t), ps) for t, ps in assignment.items()]
        assert [ps for _, ps in owned] == [[0]]
        assert heartbeat(sock, group, member, epoch, None, owned)[0] == 0
        assert heartbeat(sock, group, member, epoch + 3, None)[0] == 110  # FENCED_MEMBER_EPOCH
        assert heartbeat(sock, group, "nobody", 5, None)[0] == 25  # UNKNOWN_MEMBER_ID
        assert offset_commit_v(sock, 9, group, member, epoch - 1, topic, 1) == 113  # STALE
        assert offset_commit_v(sock, 9, group, member, epoch + 1, topic, 1) == 110  # FENCED
        assert offset_commit_v(sock, 9, group, "nobody", epoch, topic, 1) == 25
        assert offset_commit_v(sock, 8, group, member, epoch, topic, 1) == 35  # below v9
        assert offset_commit_v(sock, 9, group, "", -1, topic, 1) == 25  # admin, group not empty
        assert offset_commit_v(sock, 9, group, member, epoch, topic, 7) == 0
        assert committed(stack, group, topic, 1) == {0: 7}
        # The leave heartbeat: epoch -1 back, the member is gone, the group is empty.
        error, _, left = heartbeat(sock, group, member, -1, None)
        assert (error, left) == (0, -1)
        assert heartbeat(sock, group, member, epoch, None)[0] == 25
        assert offset_commit_v(sock, 9, group, "", -1, topic, 9) == 0  # admin, empty group
    assert committed(stack, group, topic, 1) == {0: 9}


# --- poison through the proxy with group.protocol=consumer -----------------------------------

QUICK = {"max_poll_interval_ms": 6000}
SCENARIOS = {
    "crash-close": ({"mode": "crash", "close_on_crash": True, **QUICK}, REASONS),
    "crash-hard": ({"mode": "crash", **QUICK}, REASONS),
    "seek": ({"mode": "seek", **QUICK}, {"seek-back"}),
    "deserializer": ({"mode": "deserializer", **QUICK}, REASONS),
}


@pytest.fixture(scope="module")
def poison_outcomes(stack, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("kip848-apps")
    results: dict[str, object] = {}

    def run(name: str, spec: dict) -> None:
        try:
            topic = new_topic(stack.bootstrap, 2)
            produced = produce(stack.bootstrap, topic, order_items(2, 40, poison={(1, 20)}))
            group = topic + ".g"
            app = start_app(stack, "rdkafka", logdir, name, topic=topic, group=group,
                            commit="each", group_protocol="consumer", **spec)
            try:
                wait_caught_up(stack, group, topic, end_offsets(produced, 2), 240,
                               lambda: diagnose(stack, app)() + "\n" + stack.gate.summary())
            finally:
                app.stop()
            results[name] = (topic, group, produced, app)
        except BaseException as e:  # reported by the test of that scenario
            results[name] = e

    threads = [threading.Thread(target=run, args=(n, s)) for n, (s, _) in SCENARIOS.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_poison_with_consumer_protocol(stack, poison_outcomes, name):
    outcome = poison_outcomes.get(name)
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome is not None, f"scenario {name} did not finish"
    topic, group, produced, app = outcome
    poison = [r for r in produced if is_poison(r.value)]
    _, reasons = SCENARIOS[name]
    check_dlq(stack, topic, group, poison, reasons, partitions=2)
    check_nothing_lost(produced, app.processed(), poison)
    assert app.poison_seen(), "the app never met the poison record"
    (entry,) = [q for q in quarantined(stack.proxy) if q["group"] == group]
    assert (entry["topic"], entry["partition"], entry["offset"]) == (
        topic, poison[0].partition, poison[0].offset)
    assert entry["reason"] in reasons
    # The members really were KIP-848 ones: the gate coordinated the group.
    assert any(g == group and "join" in e for g, _m, e in stack.gate.events)


# --- fast failover: the proxy's KIP-848 leave heartbeat -------------------------------------

@pytest.fixture(scope="module")
def failover_stack(tmp_path_factory):
    """A second stack whose coordinator waits 120 s for a silent member, so only the
    proxy's leave can end a crashed member's session early."""
    watch = watch_yaml() + "  fast_failover:\n    enabled: true\n    grace: 1s\n"
    s = Kip848Stack(tmp_path_factory.mktemp("kip848-failover"), watch,
                    session_timeout_ms=120_000).start()
    yield s
    s.stop()


@pytest.mark.timeout(240)
def test_fast_failover_leaves_for_a_crashed_kip848_member(failover_stack, tmp_path):
    stack = failover_stack
    topic = new_topic(stack.bootstrap, 2)
    group = topic + ".g"
    produced = produce(stack.bootstrap, topic, order_items(2, 60))
    app = start_app(stack, "rdkafka", tmp_path, "failover", topic=topic, group=group,
                    mode="ok", commit="each", sleep_ms=20, group_protocol="consumer")
    diag = lambda: diagnose(stack, app)() + "\n" + stack.gate.summary()  # noqa: E731
    try:
        wait_for(lambda: len(app.processed()) >= 10 and len(stack.gate.members(group)) == 1,
                 90, "the app to work as the group's one member", diag)
        (crashed,) = stack.gate.members(group)
        app.kill_current()  # SIGKILL: no leave heartbeat from the client
        wait_for(lambda: any(g == group and m == crashed and not e.startswith("join")
                             for g, m, e in stack.gate.events),
                 90, f"member {crashed} to be removed", diag)
        wait_caught_up(stack, group, topic, end_offsets(produced, 2), 120, diag)
    finally:
        app.stop()
    removal = [e for g, m, e in stack.gate.events if g == group and m == crashed
               and not e.startswith("join") and not e.startswith("metadata")]
    # The proxy's leave heartbeat (epoch -1) removed it, not the 120 s session timeout.
    assert removal and removal[0].startswith("leave"), removal
    assert metric_for(stack.proxy, "quarantine_member_leaves_sent_total", group=group) >= 1
    check_nothing_lost(produced, app.processed(), [])


# --- share groups: passed through untouched ---------------------------------------------------

def api_versions_v3(sock) -> dict[int, tuple[int, int]]:
    body = c_str("kip848-raw") + c_str("1") + b"\x00"
    cid = b"kip848-raw"
    payload = struct.pack(">hhih", 18, 3, 1, len(cid)) + cid + b"\x00" + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    r = Reader(wire.read_frame(sock))
    r.i32()
    assert r.i16() == 0
    apis = {}
    for _ in range(r.array_len(True)):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        r.tags()
        apis[key] = (lo, hi)
    return apis


@pytest.mark.timeout(60)
def test_share_group_apis_pass_through_untouched(stack):
    host, port = stack.bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        apis = api_versions_v3(sock)
        for key in CANNED:
            assert apis.get(key) == (1, 1), f"api {key} not advertised as the broker does: {apis}"
        assert apis.get(68) == (0, 1), "ConsumerGroupHeartbeat not advertised"
        bodies = {
            SHARE_GROUP_HEARTBEAT: c_str("share-g") + c_str(uuid.uuid4().hex) + struct.pack(">i", 0)
            + c_str(None) + c_len(1) + c_str("some-topic") + b"\x00",
            SHARE_FETCH: c_str("share-g") + c_str("m") + struct.pack(">iiiiii", 0, 500, 1, 1024, 10, 10)
            + c_len(0) + c_len(0) + b"\x00",
            SHARE_ACKNOWLEDGE: c_str("share-g") + c_str("m") + struct.pack(">i", 1) + c_len(0)
            + b"\x00",
        }
        before = {k: len(stack.gate.raw.get(k, [])) for k in CANNED}
        for i, (key, body) in enumerate(bodies.items()):
            sock.sendall(flexible_request(key, 1, 100 + i, body))
            resp = wire.read_frame(sock)
            assert resp is not None
            assert struct.unpack_from(">i", resp)[0] == 100 + i
            assert resp[4:] == b"\x00" + CANNED[key], f"answer to api {key} changed"
    for key, body in bodies.items():
        got = stack.gate.raw[key][before[key]:]
        assert got == [body], f"request of api {key} changed on its way: {got} != {body}"

    # A leader change names a broker (node_endpoints): the one thing the proxy rewrites, so
    # that the client keeps talking to the proxy.
    def share_answer(key: int, port: int) -> bytes:
        lock = struct.pack(">i", 15000) if key == SHARE_FETCH else b""
        endpoint = struct.pack(">i", 111) + c_str("127.0.0.1") + struct.pack(">i", port)
        return (struct.pack(">ih", 0, 0) + c_str(None) + lock + c_len(0) + c_len(1) + endpoint
                + c_str(None) + b"\x00" + b"\x00")

    saved = dict(stack.gate.canned)
    try:
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            for key in (SHARE_FETCH, SHARE_ACKNOWLEDGE):
                stack.gate.canned[key] = share_answer(key, stack.gate.port)
                sock.sendall(flexible_request(key, 1, 7, bodies[key]))
                resp = wire.read_frame(sock)
                assert resp is not None
                assert resp[4:] == b"\x00" + share_answer(key, stack.proxy.node_port), (
                    f"api {key}: broker address not rewritten to the proxy's")
    finally:
        stack.gate.canned.clear()
        stack.gate.canned.update(saved)
    # Share groups are not "detected": the proxy never saw a consumer group named share-g.
    assert not [q for q in quarantined(stack.proxy) if q["group"] == "share-g"]
