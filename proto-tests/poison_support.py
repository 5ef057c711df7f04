"""Support for the poison-record tests (``test_poison_*.py``): a broker and proxy with a
``watch:`` config, consumer applications run as real processes under a supervisor that
restarts them, and the checks that count every record.

The broker is read and written directly (``stack.broker``) when a test checks what is
really in a topic or what a group really committed; the applications always go through
the proxy.

A stack is built for one consumer group protocol (``group_protocol``): ``classic`` is
tansu itself; ``consumer`` (KIP-848) puts ``kip848_gate`` in front of tansu, because tansu
does not speak ConsumerGroupHeartbeat, and librdkafka applications started through
``start_app`` then join with ``group.protocol=consumer``. Suites that list both in
``GROUP_PROTOCOLS`` run once per protocol (see ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from apps.supervisor import Supervisor
from harness import Quarantine, Stack, Tansu, _tail

REASONS = {"crash-loop", "seek-back", "stalled", "redelivery"}
"""The detection reasons the proxy writes in ``__quarantine.reason``."""

CONTEXT_HEADERS = ("__connect.errors.topic", "__connect.errors.partition",
                   "__connect.errors.offset", "__connect.errors.stage",
                   "__connect.errors.exception.message", "__quarantine.group",
                   "__quarantine.topic", "__quarantine.partition", "__quarantine.offset",
                   "__quarantine.reason", "__quarantine.delivery.count")


# --- record values ----------------------------------------------------------------------

def good_value(i: int) -> bytes:
    """An order the applications process."""
    return json.dumps({"order": i, "total": round(i * 1.25, 2), "currency": "EUR",
                       "items": [{"sku": f"sku-{i % 17}", "qty": 1 + i % 3}]}).encode()


def poison_value(i: int) -> bytes:
    """An order no application can parse (cut-off JSON): every app refuses it."""
    return b'{"order": %d, "total": 12.5, "currency": ' % i


def flaky_value(i: int) -> bytes:
    """An order the applications fail on a few times before processing it."""
    return json.dumps({"order": i, "total": 1.0, "flaky": True}).encode()


def is_poison(value: bytes | None) -> bool:
    """Whether the applications refuse ``value``."""
    try:
        json.loads(value or b"")
        return False
    except ValueError:
        return True


def order_items(partitions: int, per_partition: int, poison: set[tuple[int, int]] = frozenset(),
                flaky: set[tuple[int, int]] = frozenset()) -> list[tuple]:
    """Orders for ``produce``, interleaved over the partitions; the i-th record of partition
    p is poison when (p, i) is in ``poison`` (on a fresh topic, i is its offset)."""
    items = []
    for i in range(per_partition):
        for p in range(partitions):
            n = i * partitions + p
            value = (poison_value(n) if (p, i) in poison
                     else flaky_value(n) if (p, i) in flaky else good_value(n))
            items.append((p, f"order-{n}".encode(), value,
                          [("source", b"orders"), ("seq", str(n).encode())]))
    return items


# --- the stack --------------------------------------------------------------------------

def watch_yaml(topic_template: str | None = None, **detection) -> str:
    """A ``watch:`` section. ``detection`` keys go under ``watch.detection``; with no
    arguments the section is empty, so the proxy's defaults apply."""
    lines = ["watch:", "  enabled: true"]
    if detection:
        lines.append("  detection:")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in detection.items()]
    if topic_template is not None:
        lines += ["  dead_letter:", f"    topic_template: {json.dumps(topic_template)}"]
    return "\n".join(lines) + "\n"


@dataclass
class WatchedQuarantine(Quarantine):
    """A proxy whose config may carry an admin token and a ``watch:`` section."""

    admin_token: str | None = None

    def write_config(self) -> Path:
        path = super().write_config()
        if self.admin_token is not None:
            text = path.read_text()
            listen = f"  listen: \"127.0.0.1:{self.admin_port}\"\n"
            assert listen in text, "harness admin section changed"
            path.write_text(text.replace(listen, listen + f"  token: {json.dumps(self.admin_token)}\n"))
        return path

    def kill9(self) -> None:
        """SIGKILL, as a crashed pod would go: nothing flushed, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class SchemaTansu(Tansu):
    """A tansu broker with its file schema registry: a produce to a topic named by a
    ``<topic>.json`` schema in ``schemas`` is refused with INVALID_RECORD when a record
    does not validate. The tests use it to make dead-letter writes fail."""

    schemas: dict[str, dict] = field(default_factory=dict)

    def start(self, timeout: float = 15.0) -> "SchemaTansu":
        registry = self.workdir / "schemas"
        registry.mkdir(parents=True, exist_ok=True)
        for topic, schema in self.schemas.items():
            (registry / f"{topic}.json").write_text(json.dumps(schema))
        super().start(timeout)
        return self

    def extra_args(self) -> list[str]:
        # tansu resolves a file:// registry URL against its working directory.
        return ["--schema-registry", "file://./schemas"]


class PoisonStack(Stack):
    """A broker and a watching proxy. ``watch`` is the proxy's ``watch:`` YAML (None: no
    section at all, the defaults); ``schemas`` makes the broker refuse some topics;
    ``group_protocol`` ``consumer`` puts the KIP-848 gate in front of the broker."""

    def __init__(self, workdir: Path, watch: str | None, admin_token: str | None = None,
                 schemas: dict[str, dict] | None = None, group_protocol: str = "classic"):
        super().__init__(via="proxy", workdir=workdir, group_protocol=group_protocol)
        if schemas:
            self.tansu = SchemaTansu(port=self.tansu.port,
                                     advertised_port=self.tansu.advertised_port,
                                     workdir=self.tansu.workdir, schemas=schemas)
        self.proxy = WatchedQuarantine(upstream=self.broker, extra_yaml=watch or "",
                                       admin_token=admin_token,
                                       workdir=self.workdir / "quarantine")

    def start(self) -> "PoisonStack":
        try:
            self.tansu.start()
            self.proxy.start()
        except BaseException:
            self.stop()
            raise
        return self


def speaks(client: str, group_protocol: str) -> bool:
    """Whether the test application of ``client`` joins groups with ``group_protocol``:
    librdkafka speaks both; kafka-python and kafkajs only the classic protocol."""
    return group_protocol == "classic" or client == "rdkafka"


def check_group_protocol(stack, group: str) -> None:
    """Under KIP-848, the group really was a KIP-848 group: the gate coordinated it (a
    member that fell back to the classic protocol would have gone to the broker); and no
    one (clients, the proxy's own connections) sent a request of a version Kafka 4.x no
    longer speaks."""
    gate = getattr(stack, "kip848", None)
    if gate is not None:
        assert any(g == group and "join" in e for g, _m, e in gate.events), (
            f"{group} never joined through ConsumerGroupHeartbeat")
        assert not gate.refused, f"requests below the Kafka 4.x baseline: {dict(gate.refused)}"
        # The consumers fetched by topic id (Fetch v13+), not by name.
        fetches = sorted(v for (api, v) in gate.versions if api == 1)
        assert fetches and max(fetches) >= 13, f"Fetch versions {fetches}: none by topic id"


def skip_unless_speaks(stack, client: str) -> None:
    protocol = getattr(stack, "group_protocol", "classic")
    if not speaks(client, protocol):
        pytest.skip(f"{client} speaks only the classic group protocol, not {protocol}")


def stack_fixture(tmp_path_factory, name: str, **kwargs):
    """Body of a module-scoped ``stack`` fixture: a PoisonStack for that module (pass the
    ``group_protocol`` fixture's value to run the module per protocol)."""
    if os.environ.get("PROTO_TESTS_VIA") == "direct":
        pytest.skip("PROTO_TESTS_VIA=direct: poison detection needs the proxy")
    name += f"-{kwargs['group_protocol']}" if "group_protocol" in kwargs else ""
    s = PoisonStack(workdir=tmp_path_factory.mktemp(name), **kwargs).start()
    try:
        yield s
    finally:
        s.stop()


# --- broker helpers (direct) ------------------------------------------------------------

@dataclass(frozen=True)
class Produced:
    """A record as written: where it landed and what it held."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int

    @property
    def at(self) -> tuple[int, int]:
        return (self.partition, self.offset)


def create_topic(bootstrap: str, name: str, partitions: int) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10).values():
        f.result(timeout=15)
    return name


def produce(bootstrap: str, topic: str, items: list[tuple[int, bytes | None, bytes | None, list]],
            **conf) -> list[Produced]:
    """Produces ``(partition, key, value, headers)`` items in order and returns them with
    the offsets and timestamps of their delivery reports."""
    out: list[Produced] = []
    errors = []

    def report(err, msg):
        if err:
            errors.append(err)
        else:
            out.append(Produced(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                tuple(msg.headers() or ()), msg.timestamp()[1]))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", **conf})
    for partition, key, value, headers in items:
        p.produce(topic, key=key, value=value, headers=list(headers), partition=partition,
                  on_delivery=report)
        p.poll(0)
    assert p.flush(60) == 0, "records still in the producer queue after 60 s"
    assert not errors, f"delivery failed: {errors[:3]}"
    assert len(out) == len(items)
    return out


def end_offsets(produced: list[Produced], partitions: int) -> dict[int, int]:
    """Per partition, the offset after the last record produced (0 when none).

    From the delivery reports, not ListOffsets: the pinned tansu reports a wrong high
    watermark after multi-record batches (see test_broker_quirks.py)."""
    ends = {p: 0 for p in range(partitions)}
    for r in produced:
        ends[r.partition] = max(ends[r.partition], r.offset + 1)
    return ends


def partition_count(bootstrap: str, topic: str) -> int | None:
    """The topic's partition count, None when it does not exist."""
    # Metadata for all topics: naming the topic would make the broker auto-create it.
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


@dataclass(frozen=True)
class Read:
    """A record read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text."""
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode("utf-8", "replace") if values and values[-1] is not None else None


def read_topic(bootstrap: str, topic: str, at_least: int = 0, settle: float = 1.0,
               timeout: float = 30.0) -> list[Read]:
    """Every record of ``topic`` from the beginning, without a group: reads until at least
    ``at_least`` arrived and nothing new came for ``settle`` seconds. An absent topic reads
    as empty."""
    partitions = partition_count(bootstrap, topic)
    if partitions is None:
        assert at_least == 0, f"topic {topic} does not exist"
        return []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "poison-tests-reader",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Read] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if len(out) >= at_least and now - last_new >= settle:
                return out
            assert now < deadline, f"{topic}: {len(out)} records after {timeout}s, wanted {at_least}"
            msg = c.poll(0.05)
            if msg is None or (msg.error() and msg.error().code() == -191):  # partition EOF
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append(Read(msg.partition(), msg.offset(), msg.key(), msg.value(),
                            tuple(msg.headers() or ()), msg.timestamp()[1]))
            last_new = time.monotonic()
    finally:
        c.close()


class Offsets:
    """Reads and sets a group's committed offsets on the broker itself."""

    def __init__(self, broker: str, group: str):
        self.consumer = Consumer({"bootstrap.servers": broker, "group.id": group,
                                  "enable.auto.commit": False})

    def committed(self, topic: str, partitions: int) -> dict[int, int]:
        """Per partition, the committed offset (-1001 when none)."""
        tps = self.consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                      timeout=10)
        return {tp.partition: tp.offset for tp in tps}

    def commit(self, topic: str, offsets: dict[int, int]) -> None:
        """Sets the committed offsets (the group must have no members)."""
        self.consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                             asynchronous=False)

    def close(self) -> None:
        self.consumer.close()


def wait_for(predicate, timeout: float, what: str, diagnose=lambda: "") -> None:
    """Polls ``predicate`` until it is true; fails with ``diagnose()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diagnose()}")
        time.sleep(0.25)


def wait_caught_up(stack: PoisonStack, group: str, topic: str, ends: dict[int, int],
                   timeout: float, diagnose=lambda: "") -> dict[int, int]:
    """Waits until the group's committed offset reached ``ends`` on every partition."""
    offsets = Offsets(stack.broker, group)
    seen: dict[int, int] = {}
    try:
        def done() -> bool:
            seen.update(offsets.committed(topic, len(ends)))
            return all(seen.get(p, -1) >= end for p, end in ends.items())
        wait_for(done, timeout, f"group {group} to commit {ends} on {topic}",
                 lambda: f"committed: {seen}\n{diagnose()}")
        return dict(seen)
    finally:
        offsets.close()


# --- the proxy's admin API --------------------------------------------------------------

def admin_call(proxy: Quarantine, method: str, path: str, body: dict | None = None,
               token: str | None = None) -> tuple[int, object]:
    """One admin API call; returns (status, JSON body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(proxy.admin_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def metric_samples(proxy: Quarantine, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` with its labels."""
    out = []
    for line in proxy.metrics_text().splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)', line)
        if m and m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((labels, float(m.group(3))))
    return out


def metric_for(proxy: Quarantine, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for have, v in metric_samples(proxy, name)
               if all(have.get(k) == want for k, want in labels.items()))


def quarantined(proxy: Quarantine, token: str | None = None) -> list[dict]:
    """``GET /quarantine``."""
    status, body = admin_call(proxy, "GET", "/quarantine", token=token)
    assert status == 200 and isinstance(body, list), f"GET /quarantine: {status} {body}"
    return body


# --- checks -------------------------------------------------------------------------------

def check_dead_letter(letter: Read, source: Produced, topic: str, group: str,
                      reasons: set[str] = REASONS, min_deliveries: int = 1) -> None:
    """``letter`` is ``source`` dead-lettered: same partition, key, value, timestamp and
    headers, plus the context headers naming its origin, and at least ``min_deliveries``
    deliveries counted."""
    where = f"DLQ record at {letter.partition}:{letter.offset}"
    assert letter.partition == source.partition, f"{where}: not in the source's partition {source.partition}"
    assert letter.key == source.key and letter.value == source.value, f"{where}: key/value changed"
    assert letter.timestamp == source.timestamp, f"{where}: timestamp {letter.timestamp} != {source.timestamp}"
    for h in source.headers:
        assert h in letter.headers, f"{where}: original header {h} missing"
    missing = [h for h in CONTEXT_HEADERS if letter.header(h) is None]
    assert not missing, f"{where}: headers missing: {missing}; has {[k for k, _ in letter.headers]}"
    expect = {"__connect.errors.topic": topic, "__connect.errors.partition": str(source.partition),
              "__connect.errors.offset": str(source.offset),
              "__connect.errors.stage": "KAFKA_CONSUME", "__quarantine.group": group,
              "__quarantine.topic": topic, "__quarantine.partition": str(source.partition),
              "__quarantine.offset": str(source.offset)}
    wrong = {k: letter.header(k) for k, v in expect.items() if letter.header(k) != v}
    assert not wrong, f"{where}: wrong context headers {wrong}, expected {expect}"
    assert letter.header("__quarantine.reason") in reasons, (
        f"{where}: reason {letter.header('__quarantine.reason')!r} not in {reasons}")
    count = int(letter.header("__quarantine.delivery.count"))
    assert count >= min_deliveries, f"{where}: delivery count {count} < {min_deliveries}"


def check_dlq(stack: PoisonStack, topic: str, group: str, poison: list[Produced],
              reasons: set[str] = REASONS, dlq: str | None = None,
              partitions: int | None = None) -> list[Read]:
    """The DLQ holds exactly one dead letter per ``poison`` record, nothing else, and has
    the source's partition count."""
    dlq = dlq or f"{topic}.dlq"
    letters = read_topic(stack.broker, dlq, at_least=len(poison))
    got = sorted((int(r.header("__connect.errors.partition") or -1),
                  int(r.header("__connect.errors.offset") or -1)) for r in letters)
    assert got == sorted(p.at for p in poison), (
        f"{dlq} holds origins {got}, expected exactly {sorted(p.at for p in poison)}")
    by_at = {p.at: p for p in poison}
    for letter in letters:
        src = by_at[(int(letter.header("__connect.errors.partition")),
                     int(letter.header("__connect.errors.offset")))]
        check_dead_letter(letter, src, topic, group, reasons)
    if partitions is not None:
        assert partition_count(stack.broker, dlq) == partitions, f"{dlq}: wrong partition count"
    return letters


# --- applications -----------------------------------------------------------------------

def diagnose(stack: PoisonStack, *supervisors: Supervisor, token: str | None = None):
    """A diagnose callback for wait_for: app summaries, quarantine list, proxy log tail."""
    def text() -> str:
        parts = [s.summary() for s in supervisors]
        try:
            status, body = admin_call(stack.proxy, "GET", "/quarantine", token=token)
            parts.append(f"/quarantine: {status} {body}")
        except OSError as e:
            parts.append(f"/quarantine: {e}")
        parts.append("proxy log:\n" + _tail(stack.proxy.log_path, 30))
        return "\n".join(parts)
    return text


def check_nothing_lost(produced: list[Produced], processed: set[tuple[int, int]],
                       poison: list[Produced]) -> None:
    """Every produced record was processed by the application or is one of the poison
    records (whose DLQ copies ``check_dlq`` checks); no poison record was processed."""
    poison_at = {p.at for p in poison}
    all_at = {r.at for r in produced}
    missing = all_at - processed - poison_at
    assert not missing, f"{len(missing)} records neither processed nor dead-lettered: {sorted(missing)[:10]}"
    assert not (processed & poison_at), f"poison processed?! {processed & poison_at}"
    assert processed <= all_at, f"processed offsets never produced: {sorted(processed - all_at)[:5]}"
