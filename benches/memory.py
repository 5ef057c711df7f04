"""Benchmark: peak memory of the proxy against the number of lagging consumers, side by
side with a plain TCP relay (benches/tcp_relay.rs), in one run.

For each shape (partitions, consumer groups) and each route (relay, quarantine with its
defaults: detection on for every topic and group):
  * a fresh broker (tansu, in memory), a topic of PARTITIONS partitions holding --records
    records of 1 KiB;
  * G librdkafka consumers, each in its own group, start at the earliest offset at once
    (every one of them lagging by the whole topic) with librdkafka's default fetch sizes
    (fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB), and read every record;
  * the relay's or proxy's peak RSS (VmHWM) and the seconds until every consumer is done.

Run it with the release build: `cargo build --release --bins`, then
`~/.cache/quarantine/venv/bin/python benches/memory.py` (`--quick` for a short run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import start_route, status_kib  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def fill(bootstrap: str, topic: str, partitions: int, records: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 1000,
                  "compression.type": "none", "acks": 1})
    value = b"x" * 1024
    for i in range(records):
        while True:
            try:
                p.produce(topic, value, key=str(i).encode(), partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120) != 0:
        raise RuntimeError("produce did not finish")


def consume_all(bootstrap: str, topic: str, records: int, errors: list) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mem-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True})
    try:
        c.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 600
        while seen < records and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error() is None:
                    seen += 1
        if seen < records:
            errors.append(f"consumer read {seen} of {records}")
    except Exception as e:  # noqa: BLE001 - reported, never swallowed
        errors.append(repr(e))
    finally:
        c.close()


def measure(route_name: str, partitions: int, groups: int, records: int, workdir: Path):
    route = start_route(route_name, workdir / f"{route_name}-{partitions}-{groups}", "release")
    try:
        topic = f"mem-{uuid.uuid4().hex[:6]}"
        fill(route.bootstrap, topic, partitions, records)
        errors: list[str] = []
        threads = [threading.Thread(target=consume_all, args=(route.bootstrap, topic, records, errors))
                   for _ in range(groups)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - start
        if errors:
            raise RuntimeError(f"{route_name} {partitions}p/{groups}g: {errors[:3]}")
        hwm = status_kib(route.middle.pid, "VmHWM") / 1024
        return hwm, seconds
    finally:
        route.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=64_000)
    ap.add_argument("--shapes", default="8x1,8x8,8x32,64x32",
                    help="partitions x consumer groups, comma-separated")
    ap.add_argument("--quick", action="store_true", help="8,000 records, shapes 8x1,8x8")
    args = ap.parse_args()
    if args.quick:
        args.records, args.shapes = 8_000, "8x1,8x8"
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="quarantine-mem-"))
    rows = []
    for partitions, groups in shapes:
        relay = measure("relay", partitions, groups, args.records, workdir)
        proxy = measure("quarantine", partitions, groups, args.records, workdir)
        rows.append((partitions, groups, relay, proxy))
        print(f"{partitions} partitions, {groups} groups: relay {relay[0]:.1f} MiB {relay[1]:.1f} s, "
              f"quarantine {proxy[0]:.1f} MiB {proxy[1]:.1f} s", flush=True)
    print(f"\n{args.records:,} records of 1 KiB; peak RSS (VmHWM) of the relay / proxy process, "
          "seconds until every consumer read every record\n")
    print("| partitions | lagging consumers | relay | quarantine | time relay / quarantine |")
    print("|---:|---:|---:|---:|---:|")
    for partitions, groups, relay, proxy in rows:
        print(f"| {partitions} | {groups} | {relay[0]:.1f} MiB | {proxy[0]:.1f} MiB | "
              f"{relay[1]:.1f} / {proxy[1]:.1f} s ({relay[1] / proxy[1]:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
