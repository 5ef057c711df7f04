"""Support for the transform/check tests (``test_transforms.py``) and the transform
benchmark: a broker plus a proxy configured with ``pipelines:``, a minimal
Confluent-compatible schema registry served by the test process, Avro and wire-format
encoding, and clients that produce, consume through the proxy and read topics directly on
the broker.

Records are always consumed through the proxy by the client under test; the dead-letter
topics and the raw source topics are read on the broker itself (``stack.broker``), so a
check of "what is really there" never passes through the code under test.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Stack

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
ORDER_SCHEMA = SCHEMAS / "order_confirmed.json"
"""The brief's order.confirmed contract: orderId, couponId and amount are required."""

PARTITION_EOF = -191
"""librdkafka's _PARTITION_EOF error code (not an error: the end of a partition)."""


# --- the stack --------------------------------------------------------------------------

def pipelines_yaml(pipelines: list[dict]) -> str:
    """The top-level ``pipelines:`` section. JSON is YAML, and keeps keys such as
    ``transforms.mask.type`` and values such as ``MaskField$Value`` exactly as written."""
    return "pipelines: " + json.dumps(pipelines, indent=2) + "\n"


class TransformStack(Stack):
    """A broker and a proxy whose config carries ``extra_yaml`` (the pipelines and any
    other top-level section). Always through the proxy: these tests test the proxy."""

    def __init__(self, workdir: Path, extra_yaml: str, **quarantine_args):
        super().__init__(via="proxy", workdir=workdir, extra_yaml=extra_yaml, **quarantine_args)

    @property
    def broker(self) -> str:
        """The broker's own address, for reads that must not go through the proxy."""
        return self.tansu.address


# --- a schema registry ------------------------------------------------------------------

class SchemaRegistry:
    """A minimal Confluent-compatible schema registry on 127.0.0.1 (port chosen by the OS):
    ``GET /schemas/ids/{id}`` answers ``{"schema": ..., "schemaType": ...}`` or 404.
    Paths under ``/broken`` answer 500, as a registry whose backend is down does.
    Every request is counted by path."""

    def __init__(self, schemas: dict[int, tuple[str, str]]):
        self.schemas = dict(schemas)
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                with registry._lock:
                    registry.hits[self.path] += 1
                status, body = registry._answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, path: str) -> tuple[int, dict]:
        if path.startswith("/broken/"):
            return 500, {"error_code": 50001, "message": "Error in the backend data store"}
        m = re.fullmatch(r"/schemas/ids/(\d+)", path.split("?", 1)[0])
        if not m:
            return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}
        entry = self.schemas.get(int(m.group(1)))
        if entry is None:
            return 404, {"error_code": 40403, "message": "Schema not found"}
        schema_type, schema = entry
        body = {"schema": schema}
        if schema_type != "AVRO":  # Confluent leaves schemaType out for Avro
            body["schemaType"] = schema_type
        return 200, body

    def start(self) -> "SchemaRegistry":
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def hits_for(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- encodings ----------------------------------------------------------------------------

def wire(schema_id: int, payload: bytes) -> bytes:
    """Confluent's wire format: magic byte 0, 4-byte big-endian schema id, payload."""
    return b"\x00" + struct.pack(">I", schema_id) + payload


def avro_long(n: int) -> bytes:
    """An Avro ``long``/``int``: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def avro_string(s: str) -> bytes:
    """An Avro ``string``: length as a long, then UTF-8."""
    data = s.encode()
    return avro_long(len(data)) + data


def jdump(obj) -> bytes:
    """Compact JSON bytes, the way the tests produce JSON values."""
    return json.dumps(obj, separators=(",", ":")).encode()


# --- produce, consume, read ---------------------------------------------------------------

@dataclass(frozen=True)
class Msg:
    """A record as produced (offset from the delivery report) or as received."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def at(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text (None when absent or null)."""
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode("utf-8", "replace") if values and values[-1] is not None else None

    def json(self):
        return json.loads(self.value)


def create_topic(bootstrap: str, name: str, partitions: int) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10).values():
        f.result(timeout=15)
    return name


def produce(bootstrap: str, topic: str,
            items: list[tuple[int, bytes | None, bytes | None, list]]) -> list[Msg]:
    """Produces ``(partition, key, value, headers)`` items in this order and returns them,
    in the same order, with the offsets of their delivery reports."""
    reports: dict[int, Msg] = {}
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                  "enable.idempotence": False, "max.in.flight.requests.per.connection": 1})
    for i, (partition, key, value, headers) in enumerate(items):
        # Delivery reports do not carry the headers: keep the ones we sent.
        def report(err, msg, i=i, headers=tuple(headers)):
            if err:
                errors.append(err)
            else:
                reports[i] = Msg(msg.partition(), msg.offset(), msg.key(), msg.value(), headers)
        p.produce(topic, key=key, value=value, headers=list(headers), partition=partition,
                  on_delivery=report)
        p.poll(0)
    assert p.flush(60) == 0, "records still in the producer queue after 60 s"
    assert not errors, f"delivery failed: {errors[:3]}"
    return [reports[i] for i in range(len(items))]


def _drain(consumer: Consumer, expect: int, settle: float, timeout: float,
           what: str) -> list[Msg]:
    """Polls until ``expect`` records arrived and nothing more came for ``settle`` s."""
    out: list[Msg] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while True:
        now = time.monotonic()
        if len(out) >= expect and now - last_new >= settle:
            return out
        assert now < deadline, (
            f"{what}: {len(out)} records after {timeout}s, expected {expect}; "
            f"got offsets {[m.at for m in out][:40]}")
        msg = consumer.poll(0.05)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        out.append(Msg(msg.partition(), msg.offset(), msg.key(), msg.value(),
                       tuple(msg.headers() or ())))
        last_new = time.monotonic()


RDKAFKA_FAST = {
    "fetch.wait.max.ms": 20,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "topic.metadata.refresh.interval.ms": 5000,
}
"""Same settings as conftest.RDKAFKA_FAST (tansu holds JoinGroup for half the session)."""


def consume_group(bootstrap: str, topic: str, group: str, expect: int, settle: float = 1.5,
                  timeout: float = 60.0) -> list[Msg]:
    """A confluent-kafka group member subscribed to ``topic`` from the beginning; reads
    until ``expect`` records came and then ``settle`` seconds more (to see any extra),
    commits and leaves the group cleanly."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": False, **RDKAFKA_FAST})
    try:
        c.subscribe([topic])
        out = _drain(c, expect, settle, timeout, f"group {group} on {topic}")
        if out:
            c.commit(asynchronous=False)
        return out
    finally:
        c.close()


def partition_count(bootstrap: str, topic: str) -> int | None:
    """The topic's partition count, None when it does not exist."""
    # Metadata for all topics: asking for one by name makes tansu create it.
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def read_direct(broker: str, topic: str, expect: int, settle: float = 1.0,
                timeout: float = 30.0) -> list[Msg]:
    """Every record of ``topic`` read straight from the broker, without a group. An absent
    topic reads as empty (and must then be expected empty)."""
    partitions = partition_count(broker, topic)
    if partitions is None:
        assert expect == 0, f"topic {topic} does not exist, expected {expect} records in it"
        return []
    c = Consumer({"bootstrap.servers": broker, "group.id": "transform-tests-reader",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        return _drain(c, expect, settle, timeout, f"direct read of {topic}")
    finally:
        c.close()


def commit_direct(broker: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Sets a group's committed offsets on the broker (the group must have no members)."""
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


# --- metrics ------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# --- checks -------------------------------------------------------------------------------

CONNECT_HEADERS = ("__connect.errors.topic", "__connect.errors.partition",
                   "__connect.errors.offset", "__connect.errors.stage",
                   "__connect.errors.class.name", "__connect.errors.exception.class.name",
                   "__connect.errors.exception.message")

QUARANTINE_HEADERS = ("__quarantine.group", "__quarantine.topic", "__quarantine.partition",
                      "__quarantine.offset", "__quarantine.reason")


def letters_by_origin(letters: list[Msg]) -> dict[tuple[int, int], Msg]:
    """Dead letters keyed by the (partition, offset) of the record they hold; fails on a
    record dead-lettered twice."""
    out: dict[tuple[int, int], Msg] = {}
    for letter in letters:
        at = (int(letter.header("__connect.errors.partition") or -1),
              int(letter.header("__connect.errors.offset") or -1))
        assert at not in out, f"origin {at} was dead-lettered twice"
        out[at] = letter
    return out


def check_letter(letter: Msg, source: Msg, topic: str, group: str, stage: str,
                 message_has: str, class_name: str | None = None,
                 exception: str | None = None, same_payload: bool = True) -> None:
    """``letter`` is the dead letter of ``source``: Connect-style context headers with the
    stage and a message containing ``message_has``, the quarantine headers naming
    origin, group and reason ``check``, and (unless masked) the source's key, value and
    headers."""
    where = f"dead letter of {source.at}"
    names = [k for k, _ in letter.headers]
    missing = [h for h in CONNECT_HEADERS + QUARANTINE_HEADERS if letter.header(h) is None]
    assert not missing, f"{where}: headers missing {missing}; has {names}"
    expect = {"__connect.errors.topic": topic,
              "__connect.errors.partition": str(source.partition),
              "__connect.errors.offset": str(source.offset),
              "__connect.errors.stage": stage,
              "__quarantine.topic": topic, "__quarantine.partition": str(source.partition),
              "__quarantine.offset": str(source.offset), "__quarantine.group": group,
              "__quarantine.reason": "check"}
    if class_name is not None:
        expect["__connect.errors.class.name"] = class_name
    if exception is not None:
        expect["__connect.errors.exception.class.name"] = exception
    wrong = {k: letter.header(k) for k, v in expect.items() if letter.header(k) != v}
    assert not wrong, f"{where}: wrong headers {wrong}, expected {expect}"
    message = letter.header("__connect.errors.exception.message") or ""
    assert message_has in message, f"{where}: message {message!r} does not say {message_has!r}"
    if same_payload:
        assert letter.key == source.key, f"{where}: key {letter.key!r} != {source.key!r}"
        assert letter.value == source.value, f"{where}: value {letter.value!r} != {source.value!r}"
        for h in source.headers:
            assert h in letter.headers, f"{where}: source header {h} missing"
