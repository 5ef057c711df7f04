"""kafkajs (node) through the proxy: topics, codecs, headers, group commit and resume,
rebalance, and addresses. Each scenario is a node process (js/scenario.js) that reports in
JSON."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from records import CODECS, Rec, assert_offsets_dense, assert_same_records, make_records

SCENARIO = Path(__file__).resolve().parent / "js" / "scenario.js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (SCENARIO.parent / "node_modules").exists(),
    reason="node or proto-tests/js/node_modules missing: run scripts/setup.sh")


def b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


def run_js(op: str, spec: dict, timeout: float = 60) -> dict:
    """Runs one single-shot scenario and returns its JSON answer."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(spec, f)
        f.flush()
        proc = subprocess.run(["node", str(SCENARIO), op, "@" + f.name], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0 and lines, (
        f"kafkajs {op} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def produce(bootstrap: str, topic: str, records: list[Rec], codec: str = "none",
            chunk: int | None = None) -> None:
    spec = {"brokers": [bootstrap], "topic": topic, "codec": codec, "chunk": chunk,
            "records": [{"partition": r.partition, "key": b64(r.key), "value": b64(r.value),
                         "headers": [[k, b64(v)] for k, v in r.headers]} for r in records]}
    result = run_js("produce", spec)
    assert all(r["errorCode"] == 0 for r in result["results"]), result


class JsConsumer:
    """A kafkajs group member in a node process; its events are collected as they come."""

    def __init__(self, bootstrap: str, topic: str, group: str, **options):
        spec = {"brokers": [bootstrap], "topic": topic, "group": group, **options}
        self.proc = subprocess.Popen(["node", str(SCENARIO), "consume", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                with self._cond:
                    self.events.append(json.loads(line))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def records(self) -> list[Rec]:
        with self._cond:
            return [Rec(e["partition"], unb64(e["key"]), unb64(e["value"]),
                        tuple((k, unb64(v)) for k, v in e["headers"]), e["offset"])
                    for e in self.events if e["event"] == "record"]

    def assignment(self) -> list[int]:
        """Partitions of the last GROUP_JOIN."""
        with self._cond:
            joins = [e for e in self.events if e["event"] == "join"]
        if not joins:
            return []
        return sorted(p for parts in joins[-1]["assignment"].values() for p in parts)

    def wait_for(self, predicate, timeout: float = 60, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                errors = [e for e in self.events if e["event"] == "error"]
                assert not errors, f"kafkajs consumer failed: {errors}"
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, (
                    f"kafkajs consumer: timed out waiting for {what}; exit "
                    f"{self.proc.poll()}; events {self.events[-5:]}; "
                    f"stderr {''.join(self.stderr[-20:])}")
                self._cond.wait(min(left, 0.2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def assert_proxy_address(stack, host: str, port: int) -> None:
    assert host == "127.0.0.1" and port in stack.allowed_ports(), (
        f"client was told about {host}:{port}; proxy ports are {stack.allowed_ports()}, "
        f"the broker is on {stack.tansu.port}")


def consume_all(stack, topic: str, group: str, count: int, **options) -> list[Rec]:
    c = JsConsumer(stack.bootstrap, topic, group, **options)
    try:
        c.wait_for(lambda: len(c.records()) >= count, what=f"{count} records")
        time.sleep(0.3)  # a duplicate would show up now
    finally:
        c.stop()
    return c.records()


def test_admin_creates_topic_and_sees_only_proxy_addresses(stack, group_name):
    topic = group_name.replace(".g", ".t")
    result = run_js("admin", {"brokers": [stack.bootstrap], "topic": topic, "partitions": 5})
    assert result["created"] is True
    (described,) = result["metadata"]["topics"]
    assert len(described["partitions"]) == 5
    brokers = result["cluster"]["brokers"]
    assert brokers
    for b in brokers:
        assert_proxy_address(stack, b["host"], b["port"])
    assert result["cluster"]["controller"] in {b["nodeId"] for b in brokers}
    for p in described["partitions"]:
        assert p["leader"] in {b["nodeId"] for b in brokers}


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(stack, new_topic, group_name, codec):
    topic = new_topic(partitions=3)
    sent = make_records(codec, 300, 3)
    produce(stack.bootstrap, topic, sent, codec=codec, chunk=50)
    got = consume_all(stack, topic, group_name, len(sent))
    assert_same_records(sent, got)
    assert_offsets_dense(got)


def test_headers_round_trip(stack, new_topic, group_name):
    topic = new_topic(partitions=1)
    headers = (("empty", b""), ("bin", bytes(range(256))), ("dup", b"1"), ("dup", b"2"),
               ("ünïcode", "välue".encode()))
    sent = [Rec(0, None, b"no key", headers), Rec(0, b"k", None, ()),
            Rec(0, b"k2", b"v" * 100_000, headers)]
    produce(stack.bootstrap, topic, sent)
    got = consume_all(stack, topic, group_name, len(sent))
    assert [r.content() for r in got] == [r.content() for r in sent]


def test_group_commit_stop_restart_resumes(stack, new_topic, group_name):
    topic = new_topic(partitions=3)
    sent = make_records("resume", 600, 3)
    produce(stack.bootstrap, topic, sent, chunk=30)  # multi-record batches

    first = JsConsumer(stack.bootstrap, topic, group_name, commitEach=True, maxRecords=250)
    try:
        first.wait_for(lambda: sum(e["event"] == "committed" for e in first.events) >= 250,
                       what="250 commits")
    finally:
        first.stop()
    processed = first.records()
    assert len(processed) == 250
    committed = {}
    for p in range(3):
        offsets = [r.offset for r in processed if r.partition == p]
        committed[p] = max(offsets) + 1 if offsets else 0

    resumed = consume_all(stack, topic, group_name, len(sent) - len(processed))
    for p in range(3):
        offsets = [r.offset for r in resumed if r.partition == p]
        if offsets:
            assert min(offsets) == committed[p], f"partition {p} did not resume"
    assert_same_records(sent, processed + resumed)


def test_rebalance_between_two_members(stack, new_topic, group_name):
    topic = new_topic(partitions=4)
    a = JsConsumer(stack.bootstrap, topic, group_name, autoCommit=True)
    b = None
    try:
        a.wait_for(lambda: a.assignment() == [0, 1, 2, 3], what="first assignment")
        first = make_records("before", 200, 4)
        produce(stack.bootstrap, topic, first)
        a.wait_for(lambda: len(a.records()) >= 200, what="records before the rebalance")

        b = JsConsumer(stack.bootstrap, topic, group_name, autoCommit=True)
        b.wait_for(lambda: b.assignment(), what="second member's assignment")
        a.wait_for(lambda: len(a.assignment()) < 4, what="first member's new assignment")
        assert sorted(a.assignment() + b.assignment()) == [0, 1, 2, 3]
        second = make_records("after", 200, 4)
        produce(stack.bootstrap, topic, second)

        want = {r.content() for r in first + second}
        a.wait_for(lambda: want <= {r.content() for r in a.records() + b.records()},
                   what="every record")
        after_b = [r for r in b.records() if r.value.startswith(b"after")]
        assert after_b, "the second member received none of the new records"
        assert {r.partition for r in after_b} <= set(b.assignment())
    finally:
        a.stop()
        if b is not None:
            b.stop()
