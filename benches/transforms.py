"""Benchmark: consume throughput through quarantine for a topic without a pipeline and for
a topic with a 3-transform Connect-style chain, same broker, same proxy, same records, one
run, with the ratio (target >= 0.6).

Setup: one tansu broker (in memory) and one quarantine proxy (release build by default)
whose config has a single pipeline, on the ``chain`` topic only:
MaskField$Value (email) -> InsertField$Value (static field) -> ReplaceField$Value (renames).
The same ``--records`` JSON records of ``--size`` bytes are produced directly to the
broker into both topics. Then, round after round, a librdkafka consumer (no group, every
partition from offset 0) reads each topic through the proxy; the topics take turns, so
background load on a shared machine spreads over both. A direct read from the broker is
measured too, for reference.

Reported per route: median records/s and MB/s over --rounds, and the proxy's CPU time per
record (utime + stime of the proxy process during the reads), which does not depend on how
fast the Python client is.

Run after `cargo build --release`, with the venv of scripts/setup.sh:
    python benches/transforms.py [--records 100000] [--size 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "proto-tests"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Quarantine, Tansu, free_port  # noqa: E402
from transform_support import pipelines_yaml  # noqa: E402

PARTITIONS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHAIN = {
    "transforms": "mask,insert,rename",
    "transforms.mask.type": "MaskField$Value",
    "transforms.mask.fields": "email",
    "transforms.mask.replacement": "<redacted>",
    "transforms.insert.type": "InsertField$Value",
    "transforms.insert.static.field": "pipeline",
    "transforms.insert.static.value": "orders-v2",
    "transforms.rename.type": "ReplaceField$Value",
    "transforms.rename.renames": "customer:client,amt:amount",
    "errors.tolerance": "all",
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def record_value(i: int, size: int) -> bytes:
    """A JSON order of exactly ``size`` bytes (padded in a ``note`` field)."""
    doc = {"id": i, "customer": f"customer-{i % 977}", "email": f"user{i}@example.com",
           "amt": round(i * 0.37, 2), "currency": "EUR",
           "items": [{"sku": f"sku-{i % 31}", "qty": 1 + i % 4}], "note": ""}
    base = len(json.dumps(doc, separators=(",", ":")))
    if base > size:
        raise SystemExit(f"--size {size} is smaller than a record without padding ({base})")
    doc["note"] = "x" * (size - base)
    value = json.dumps(doc, separators=(",", ":")).encode()
    assert len(value) == size
    return value


def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        f.result(timeout=15)


def produce(bootstrap: str, topics: list[str], records: int, size: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5,
                  "batch.size": 1_000_000, "batch.num.messages": 100_000,
                  "queue.buffering.max.messages": 1_000_000,
                  "queue.buffering.max.kbytes": 2_097_151, "compression.type": "none"})
    failed = []

    def report(err, _msg):
        if err:
            failed.append(err)

    for i in range(records):
        value = record_value(i, size)
        key = f"order-{i}".encode()
        for t in topics:
            while True:
                try:
                    p.produce(t, key=key, value=value, partition=i % PARTITIONS,
                              on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
        p.poll(0)
    if p.flush(120) != 0 or failed:
        raise SystemExit(f"produce failed: {failed[:3]}")


def consume(bootstrap: str, topic: str, records: int, pid: int | None,
            keep_first: bool = False) -> tuple[float, float, bytes | None]:
    """Reads ``records`` records from offset 0 of every partition. Returns (seconds,
    proxy CPU seconds, first value when ``keep_first``)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "transform-bench",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 20,
                  "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 4_194_304,
                  "queued.min.messages": 200_000, "queued.max.messages.kbytes": 1_048_576})
    got = 0
    first = None
    cpu0 = cpu_seconds(pid) if pid else 0.0
    start = time.perf_counter()
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    deadline = time.monotonic() + 300
    try:
        while got < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: only {got} of {records} records")
            # Never ask for more than is left: consume() would wait out its timeout.
            for msg in c.consume(num_messages=min(10_000, records - got), timeout=0.5):
                if msg.error() is None:
                    if keep_first and first is None:
                        first = msg.value()
                    got += 1
        elapsed = time.perf_counter() - start
        cpu = (cpu_seconds(pid) - cpu0) if pid else 0.0
        return elapsed, cpu, first
    finally:
        c.close()


@dataclass
class Route:
    name: str
    bootstrap: str
    topic: str
    pid: int | None
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def rate(self, records: int) -> float:
        return records / statistics.median(self.seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1024, help="record value size in bytes")
    ap.add_argument("--rounds", type=int, default=5, help="measured reads per route")
    ap.add_argument("--profile", default="release", help="cargo profile of the proxy binary")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="transform-bench-"))
    plain, chain = "plain", "chain"
    tansu = Tansu(port=free_port(), workdir=workdir).start()
    proxy = None
    try:
        extra = pipelines_yaml([{"name": "bench-chain", "topics": [chain], "config": CHAIN}])
        proxy = Quarantine(upstream=tansu.address, profile=args.profile, log_level="warn",
                           extra_yaml=extra, workdir=workdir).start()
        pid = proxy.proc.pid
        create_topics(tansu.address, [plain, chain])
        t0 = time.perf_counter()
        produce(tansu.address, [plain, chain], args.records, args.size)
        print(f"produced {args.records} records of {args.size} bytes into each of "
              f"{plain!r} and {chain!r} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        routes = [Route("direct (broker, no proxy)", tansu.address, plain, None),
                  Route("quarantine, no pipeline", proxy.bootstrap, plain, pid),
                  Route("quarantine, 3-transform chain", proxy.bootstrap, chain, pid)]
        # Warm-up, and a check that the chain really ran and the plain topic was untouched.
        _, _, v_plain = consume(proxy.bootstrap, plain, args.records, pid, keep_first=True)
        _, _, v_chain = consume(proxy.bootstrap, chain, args.records, pid, keep_first=True)
        doc_plain, doc_chain = json.loads(v_plain), json.loads(v_chain)
        assert "pipeline" not in doc_plain and doc_plain["email"] != "<redacted>", doc_plain
        assert doc_chain["pipeline"] == "orders-v2" and doc_chain["email"] == "<redacted>" \
            and "client" in doc_chain and "amount" in doc_chain, doc_chain
        consume(tansu.address, plain, args.records, None)

        for rnd in range(args.rounds):
            for r in routes:
                secs, cpu, _ = consume(r.bootstrap, r.topic, args.records, r.pid)
                r.seconds.append(secs)
                r.cpu.append(cpu)
                print(f"round {rnd + 1}: {r.name}: {args.records / secs:,.0f} records/s",
                      file=sys.stderr)
    finally:
        if proxy is not None:
            proxy.stop()
        tansu.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    base = routes[1].rate(args.records)
    mb = args.size / 1e6
    print()
    print(f"consume throughput, {args.records} records x {args.size} B JSON, "
          f"{PARTITIONS} partitions, median of {args.rounds} rounds, proxy profile {args.profile}")
    print()
    print("| route | records/s | MB/s | proxy CPU us/record | ratio to no pipeline |")
    print("|---|---:|---:|---:|---:|")
    for r in routes:
        rate = r.rate(args.records)
        cpu = (f"{statistics.median(r.cpu) / args.records * 1e6:.2f}" if r.pid else "-")
        print(f"| {r.name} | {rate:,.0f} | {rate * mb:,.1f} | {cpu} | {rate / base:.2f} |")
    ratio = routes[2].rate(args.records) / base
    print()
    print(f"3-transform chain / no pipeline = {ratio:.2f} (target >= 0.60): "
          f"{'met' if ratio >= 0.6 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
