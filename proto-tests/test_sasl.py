"""SASL end to end, with real clients authenticating against the SASL gate in front of tansu
(the tansu build cannot hold SASL users itself; see sasl_gate.py).

A. The gate itself, directly: librdkafka (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) and
   kafka-python (SCRAM-SHA-256) produce and consume; wrong passwords and clients without
   SASL are turned away.
B. Pass-through: the same clients through a proxy with no ``upstream.sasl``: their own SASL
   exchange reaches the gate unchanged, and groups commit and resume.
C. The proxy's own connections authenticate (``upstream.sasl``): readiness, a manual
   quarantine's DLQ write, and a wrong own password that must never show in the log.
   These tests fail, never skip, when the proxy lacks the feature.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import struct
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError as KafkaPythonError

from conftest import RDKAFKA_FAST, unique_name
from harness import (Quarantine, Tansu, _tail, free_port, http_get, pids_connected_to,
                     quarantine_bin)
from kafka_wire import (api_versions_request, closed_by_peer, metadata_request,
                        parse_api_versions_v0, parse_metadata_v1_brokers, read_frame)
from kafka_wire import request as wire_request
from poison_support import admin_call, wait_for
from sasl_gate import SaslGate

PROXY_PASSWORD = "q-own-Pw-5501"
WRONG_PROXY_PASSWORD = "not-the-Pw-7731"
USERS = {"alice": "alice-secret", "bob": "bob-secret", "quarantine": PROXY_PASSWORD}
MECHANISMS = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
KP_FAST = {"fetch_max_wait_ms": 20, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
           "request_timeout_ms": 30000}


def proxy_sasl_env(password: str) -> dict[str, str]:
    """The environment giving the proxy its own SASL credentials (branch sasl-rust)."""
    return {"QUARANTINE__UPSTREAM__SASL__MECHANISM": "SCRAM-SHA-512",
            "QUARANTINE__UPSTREAM__SASL__USERNAME": "quarantine",
            "QUARANTINE__UPSTREAM__SASL__PASSWORD": password}


class SaslStack:
    """tansu behind a SASL gate (tansu advertises the gate), and the proxies of the tests."""

    def __init__(self, workdir):
        self.workdir = workdir
        tansu_port = free_port()
        self.gate = SaslGate("127.0.0.1", tansu_port, USERS)
        self.tansu: Tansu | None = None
        self.tansu_port = tansu_port
        self.proxies: dict[str, Quarantine] = {}

    def start(self) -> "SaslStack":
        self.gate.start()
        (self.workdir / "tansu").mkdir()
        self.tansu = Tansu(port=self.tansu_port, advertised_port=self.gate.port,
                           workdir=self.workdir / "tansu")
        try:
            self.tansu.start()
        except BaseException:
            self.gate.stop()
            raise
        return self

    def proxy(self, name: str, extra_env: dict[str, str] | None = None,
              extra_yaml: str = "") -> Quarantine:
        """Starts a proxy in front of the gate; waits for its listener, not for /ready (a
        proxy without its own credentials is never ready before a client passes)."""
        (self.workdir / name).mkdir()
        q = Quarantine(upstream=self.gate.address, extra_env=extra_env or {},
                       extra_yaml=extra_yaml, workdir=self.workdir / name)
        self.proxies[name] = q
        return q.start(wait_ready=False)

    def stop(self) -> None:
        for q in self.proxies.values():
            q.stop()
        if self.tansu:
            self.tansu.stop()
        self.gate.stop()

    def log_tails(self) -> str:
        out = f"--- gate ---\n{self.gate.summary()}\n"
        if self.tansu:
            out += f"--- tansu log ---\n{_tail(self.tansu.log_path)}\n"
        for name, q in self.proxies.items():
            out += f"--- proxy {name} log ---\n{_tail(q.log_path, 40)}\n"
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = SaslStack(tmp_path_factory.mktemp("sasl")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def passthrough(stack):
    """A proxy with no credentials of its own: client SASL passes through it.

    Watching is off: a watching proxy reads its state topic over its own connections, which
    the gate refuses without credentials, and holds watched fetches until it can (by
    design). Client SASL through a watching proxy is part C (``own_sasl``)."""
    return stack.proxy("passthrough", extra_yaml="watch:\n  enabled: false\n")


@pytest.fixture(scope="module")
def own_sasl(stack):
    """A proxy that authenticates its own connections as user ``quarantine``."""
    return stack.proxy("own-sasl", proxy_sasl_env(PROXY_PASSWORD))


# --- clients ---------------------------------------------------------------------------------

def rd_conf(bootstrap: str, mechanism: str = "SCRAM-SHA-512", user: str = "alice",
            password: str | None = None) -> dict:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user,
            "sasl.password": USERS[user] if password is None else password}


def kp_conf(bootstrap: str, password: str = USERS["alice"]) -> dict:
    return {"bootstrap_servers": bootstrap, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "alice",
            "sasl_plain_password": password}


def create_topic(conf: dict, name: str, partitions: int = 1) -> str:
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10).values():
        f.result(timeout=15)
    return name


def produce(conf: dict, topic: str, values: list[bytes]) -> list[int]:
    """Produces ``values`` to partition 0 in order; returns their offsets."""
    offsets, errors = [], []
    p = Producer({**conf, "linger.ms": 5, "acks": "all"})
    for v in values:
        p.produce(topic, value=v, partition=0,
                  on_delivery=lambda e, m: errors.append(e) if e else offsets.append(m.offset()))
    assert p.flush(30) == 0, "records still queued after 30 s"
    assert not errors, f"delivery failed: {errors[:3]}"
    return offsets


def consume(conf: dict, topic: str, group: str, count: int, settle: float = 1.0,
            commit: bool = True, while_open=lambda: None) -> list[tuple[int, bytes]]:
    """(offset, value) of what group ``group`` receives: ``count`` records and whatever else
    arrives within ``settle`` seconds; commits, then calls ``while_open()`` before closing."""
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **RDKAFKA_FAST})
    c.subscribe([topic])
    got: list[tuple[int, bytes]] = []
    deadline, quiet_until = time.monotonic() + 60, None
    try:
        while quiet_until is None or time.monotonic() < quiet_until:
            assert time.monotonic() < deadline, f"{group}: {len(got)} of {count} records"
            msg = c.poll(0.1)
            if msg is not None and msg.error():
                raise KafkaException(msg.error())
            if msg is not None:
                got.append((msg.offset(), msg.value()))
            if quiet_until is None and len(got) >= count:
                quiet_until = time.monotonic() + settle
        if commit and got:
            c.commit(asynchronous=False)
        while_open()
    finally:
        c.close()
    return got


def auth_errors(conf: dict, timeout: float = 15.0) -> list:
    """Errors a client with ``conf`` reports while trying to reach the cluster."""
    errors = []
    p = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not errors:
        p.poll(0.1)
    with pytest.raises(KafkaException):
        p.list_topics(timeout=2)
    return errors


def values(n: int, tag: str) -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(n)]


def kp_roundtrip(bootstrap: str, topic: str) -> set[tuple[str, int]]:
    """kafka-python SCRAM-SHA-256: produces 5 records, reads them back with a group and
    returns the brokers the client was told about."""
    sent = values(5, "kp")
    p = KafkaProducer(**kp_conf(bootstrap), acks="all")
    try:
        for v in sent:
            p.send(topic, value=v, partition=0).get(timeout=15)
    finally:
        p.close(timeout=10)
    c = KafkaConsumer(topic, **kp_conf(bootstrap), group_id=topic + ".g",
                      auto_offset_reset="earliest", enable_auto_commit=False, **KP_FAST)
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(sent):
            assert time.monotonic() < deadline, f"kafka-python read {len(got)} of {len(sent)}"
            for batch in c.poll(timeout_ms=100).values():
                got.extend(m.value for m in batch)
        brokers = {(b.host, b.port) for b in c._client.cluster.brokers()}
    finally:
        c.close()
    assert got == sent
    return brokers


def brokers_seen(conf: dict) -> set[tuple[str, int]]:
    md = AdminClient(conf).list_topics(timeout=10)
    return {(b.host, b.port) for b in md.brokers.values()}


# --- A. the gate, directly -------------------------------------------------------------------

def test_gate_relays_api_versions_and_answers_handshake(stack):
    with socket.create_connection(("127.0.0.1", stack.gate.port), timeout=10) as s:
        s.sendall(api_versions_request(1))
        cid, error, apis = parse_api_versions_v0(read_frame(s))
        assert (cid, error) == (1, 0)
        assert 17 in apis and 36 in apis, f"the broker's ApiVersions lacks SASL: {apis}"
        assert apis[36][1] >= 2, "SaslAuthenticate v2 not advertised"
        s.sendall(wire_request(17, 1, 2, struct.pack(">h", 6) + b"GSSAPI"))
        body = read_frame(s)
        (cid, error, n), pos = struct.unpack_from(">ihi", body), 10
        mechs = []
        for _ in range(n):
            (size,) = struct.unpack_from(">h", body, pos)
            mechs.append(body[pos + 2:pos + 2 + size].decode())
            pos += 2 + size
        assert (cid, error) == (2, 33)
        assert sorted(mechs) == sorted(MECHANISMS)


def sasl_authenticate_v2(correlation_id: int, token: bytes) -> bytes:
    """A flexible SaslAuthenticate v2 request: header v2, compact bytes, no tagged fields."""
    client = b"raw"
    payload = (struct.pack(">hhih", 36, 2, correlation_id, len(client)) + client + b"\x00"
               + bytes([len(token) + 1]) + token + b"\x00")
    return struct.pack(">i", len(payload)) + payload


def test_gate_raw_plain_v0_and_v2(stack):
    handshake = wire_request(17, 1, 1, struct.pack(">h", 5) + b"PLAIN")
    with socket.create_connection(("127.0.0.1", stack.gate.port), timeout=10) as s:
        s.sendall(handshake)
        assert struct.unpack_from(">ih", read_frame(s)) == (1, 0)
        s.sendall(sasl_authenticate_v2(2, b"\x00alice\x00nope"))
        body = read_frame(s)
        cid, tags, error, msg_len = struct.unpack_from(">ibhb", body)
        message = body[8:8 + msg_len - 1].decode()
        assert (cid, tags, error) == (2, 0, 58) and "Authentication failed" in message
        assert body[8 + msg_len - 1:] == b"\x01" + bytes(8) + b"\x00"  # no bytes, lifetime 0
        assert closed_by_peer(s), "gate kept the connection after a failed authentication"
    with socket.create_connection(("127.0.0.1", stack.gate.port), timeout=10) as s:
        s.sendall(handshake)
        read_frame(s)
        token = b"\x00alice\x00" + USERS["alice"].encode()
        s.sendall(wire_request(36, 0, 2, struct.pack(">i", len(token)) + token))
        assert read_frame(s) == struct.pack(">ihhi", 2, 0, -1, 0)
        s.sendall(metadata_request(3))  # relayed to the broker now
        cid, brokers = parse_metadata_v1_brokers(read_frame(s))
        assert cid == 3 and [(b.node_id, b.port) for b in brokers] == [(111, stack.gate.port)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_gate_confluent(stack, request, mechanism):
    conf = rd_conf(stack.gate.address, mechanism)
    before = stack.gate.auth_count("alice", mechanism)
    topic = create_topic(conf, unique_name(request))
    sent = values(10, mechanism)
    assert produce(conf, topic, sent) == list(range(10))
    assert consume(conf, topic, topic + ".g", 10) == list(enumerate(sent))
    assert stack.gate.auth_count("alice", mechanism) > before


def test_gate_kafka_python(stack, request):
    before = stack.gate.auth_count("alice", "SCRAM-SHA-256")
    topic = create_topic(rd_conf(stack.gate.address), unique_name(request))
    kp_roundtrip(stack.gate.address, topic)
    assert stack.gate.auth_count("alice", "SCRAM-SHA-256") > before


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_gate_wrong_password(stack, mechanism):
    before = stack.gate.failure_count("alice")
    errors = auth_errors(rd_conf(stack.gate.address, mechanism, password="guess"))
    assert any(e.code() == -169 for e in errors), f"no authentication error in {errors}"
    assert any("Authentication failed" in e.str() for e in errors), errors
    assert stack.gate.failure_count("alice") > before


def test_gate_wrong_password_kafka_python(stack):
    before = stack.gate.failure_count("alice")
    with pytest.raises(KafkaPythonError):
        KafkaProducer(**kp_conf(stack.gate.address, password="guess"),
                      max_block_ms=10000)
    assert stack.gate.failure_count("alice") > before


def test_gate_refuses_client_without_sasl(stack):
    before = stack.gate.refused_count()
    with socket.create_connection(("127.0.0.1", stack.gate.port), timeout=10) as s:
        s.sendall(metadata_request(1))
        assert closed_by_peer(s), "gate answered Metadata before authentication"
    assert stack.gate.refused_count() > before
    before = stack.gate.refused_count()
    admin = AdminClient({"bootstrap.servers": stack.gate.address})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    assert stack.gate.refused_count() > before
    assert stack.gate.auth_count() > 0  # the other tests did get through


# --- B. client SASL through the proxy --------------------------------------------------------

def assert_only_proxy(proxy: Quarantine, brokers: set[tuple[str, int]]) -> None:
    assert brokers and all(h == "127.0.0.1" and p in proxy.proxy_ports() for h, p in brokers), (
        f"clients were told about {brokers}; proxy ports are {proxy.proxy_ports()}")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_passthrough_confluent(stack, passthrough, request, mechanism):
    conf = rd_conf(passthrough.bootstrap, mechanism)
    before = stack.gate.auth_count("alice", mechanism)
    topic = create_topic(conf, unique_name(request))
    sent = values(10, mechanism)
    assert produce(conf, topic, sent) == list(range(10))
    direct: list[set[int]] = []
    got = consume(conf, topic, topic + ".g", 10,
                  while_open=lambda: direct.append(pids_connected_to(stack.gate.port)))
    assert got == list(enumerate(sent))
    assert os.getpid() not in direct[0], "a test client connected to the gate directly"
    assert_only_proxy(passthrough, brokers_seen(conf))
    assert stack.gate.auth_count("alice", mechanism) > before


def test_passthrough_kafka_python(stack, passthrough, request):
    before = stack.gate.auth_count("alice", "SCRAM-SHA-256")
    topic = create_topic(rd_conf(passthrough.bootstrap), unique_name(request))
    assert_only_proxy(passthrough, kp_roundtrip(passthrough.bootstrap, topic))
    assert stack.gate.auth_count("alice", "SCRAM-SHA-256") > before


def test_passthrough_group_resumes_from_commit(stack, passthrough, request):
    conf = rd_conf(passthrough.bootstrap, "SCRAM-SHA-256", user="bob")
    topic = create_topic(conf, unique_name(request))
    group = topic + ".g"
    first = values(6, "first")
    produce(conf, topic, first)
    assert consume(conf, topic, group, 6) == list(enumerate(first))
    second = values(4, "second")
    produce(conf, topic, second)
    assert consume(conf, topic, group, 4) == [(6 + i, v) for i, v in enumerate(second)], (
        "the restarted consumer did not resume from the committed offset")
    assert stack.gate.auth_count("bob", "SCRAM-SHA-256") > 0


def test_passthrough_wrong_password(stack, passthrough):
    before = stack.gate.failure_count("alice")
    errors = auth_errors(rd_conf(passthrough.bootstrap, "SCRAM-SHA-512", password="guess"))
    assert any(e.code() == -169 for e in errors), f"no authentication error in {errors}"
    assert stack.gate.failure_count("alice") > before


def test_passthrough_client_without_sasl_still_refused(stack, passthrough):
    before = stack.gate.refused_count()
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": passthrough.bootstrap}).list_topics(timeout=3)
    assert stack.gate.refused_count() > before


# --- C. the proxy's own connections (needs upstream.sasl) ------------------------------------

def test_own_sasl_ready_without_clients(stack, own_sasl):
    wait_for(lambda: http_get(own_sasl.admin_url + "/ready", 0.5)[0] == 200, 30,
             "the proxy with its own SASL credentials to become ready",
             lambda: own_sasl.log_text()[-3000:])
    assert stack.gate.auth_count("quarantine", "SCRAM-SHA-512") > 0
    assert PROXY_PASSWORD not in own_sasl.log_text(), "the proxy logged its password"


def test_own_sasl_manual_quarantine(stack, own_sasl, request):
    wait_for(lambda: http_get(own_sasl.admin_url + "/ready", 0.5)[0] == 200, 30, "ready")
    gate_conf = rd_conf(stack.gate.address)
    topic = create_topic(gate_conf, unique_name(request))
    group = topic + ".g"
    sent = values(10, "order")
    produce(gate_conf, topic, sent)
    body = {"group": group, "topic": topic, "partition": 0, "offset": 4,
            "reason": "sasl manual"}
    status, answer = admin_call(own_sasl, "POST", "/quarantine", body)
    assert status in (200, 201), f"POST /quarantine: {status} {answer}"

    reader = Consumer({**gate_conf, "group.id": topic + ".reader", "enable.auto.commit": False,
                       "fetch.wait.max.ms": 20})
    reader.assign([TopicPartition(topic + ".dlq", 0, OFFSET_BEGINNING)])
    try:
        deadline = time.monotonic() + 30
        msg = None
        while msg is None or msg.error():
            assert time.monotonic() < deadline, f"no record in {topic}.dlq"
            msg = reader.poll(0.1)
    finally:
        reader.close()
    headers = dict(msg.headers() or [])
    assert msg.value() == sent[4]
    assert headers.get("__quarantine.offset") == b"4", headers
    assert headers.get("__quarantine.group") == group.encode(), headers

    got = consume(rd_conf(own_sasl.bootstrap), topic, group, 9)
    assert [o for o, _ in got] == [o for o in range(10) if o != 4]

    # The operator's tool reaches the SASL cluster with the same variables as the proxy.
    def inspect(env: dict[str, str]) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("QUARANTINE__")}
        return subprocess.run([str(quarantine_bin()), "dlq", "inspect", topic + ".dlq",
                               "--bootstrap", stack.gate.address, "--json"],
                              env={**clean, **env}, capture_output=True, text=True, timeout=60)
    done = inspect(proxy_sasl_env(PROXY_PASSWORD))
    assert done.returncode == 0, done.stderr
    letter = json.loads(done.stdout.strip().splitlines()[0])
    assert letter["origin"]["offset"] == 4 and letter["origin"]["topic"] == topic, letter
    refused = inspect({})
    assert refused.returncode != 0, "dlq inspect reached a SASL cluster without credentials"
    # The gate refuses anything unauthenticated, so the DLQ write itself proves the proxy's
    # connection authenticated (it may reuse one opened before this test).
    assert stack.gate.auth_count("quarantine", "SCRAM-SHA-512") > 0


def test_own_sasl_wrong_password(stack):
    before = stack.gate.failure_count("quarantine")
    q = stack.proxy("wrong-own-password", proxy_sasl_env(WRONG_PROXY_PASSWORD))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert q.alive(), f"proxy exited:\n{q.log_text()[-2000:]}"
        assert http_get(q.admin_url + "/ready", 0.5)[0] != 200, "ready with a wrong password"
        time.sleep(0.25)
    log = q.log_text()
    assert "SASL authentication failed" in log, log[-2000:]
    assert WRONG_PROXY_PASSWORD not in log, "the proxy logged its password"
    assert stack.gate.failure_count("quarantine") > before


def test_watching_proxy_without_credentials_is_not_ready(stack):
    """Watching on, no upstream.sasl: the state topic cannot be read, watched fetches are
    held, so /ready must say so even after a client's Metadata reached the cluster."""
    q = stack.proxy("watching-no-credentials")
    AdminClient(rd_conf(q.bootstrap)).list_topics(timeout=10)  # a client's Metadata passes
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        status, body = http_get(q.admin_url + "/ready", 0.5)
        assert status != 200, "ready although the state topic cannot be read"
        time.sleep(0.25)
    assert "quarantine state topic" in body, body
    assert "cannot read the quarantine state topic" in q.log_text(), q.log_text()[-2000:]
