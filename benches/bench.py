"""Benchmark: the same librdkafka workload direct to the broker, through a plain TCP relay
(benches/tcp_relay.rs) and through quarantine, in one run, with ratios.

Measures, per route (direct, relay, quarantine):
  * produce throughput and consume throughput (--records records of --size bytes, batched
    the way a throughput-minded librdkafka application would), median over --rounds;
  * per-request round trip of a small acks=1 produce with one request in flight:
    p50 / p99 / p99.9 over all rounds' round trips (hdrhistogram);
  * CPU seconds per GB moved by the relay or proxy process (utime + stime from /proc);
  * its peak RSS (VmHWM) and its RSS with 100 idle client connections.

Routes take turns round after round, each round on a freshly started broker (tansu, in
memory) after a warm-up, so background load on a shared machine spreads over all routes.
A plain relay forwards the broker's advertised address untouched, so for the relay route
tansu advertises the relay's address. Run it with scripts/bench.sh (which builds the release binaries), or
`python benches/bench.py` with the venv of scripts/setup.sh after `cargo build --release`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "proto-tests"))

import confluent_kafka  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from hdrh.histogram import HdrHistogram  # noqa: E402

import kafka_wire  # noqa: E402
from harness import Quarantine, Tansu, free_port, stop_process, wait_port  # noqa: E402

PARTITIONS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process accounting

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# ---------------------------------------------------------------- the routes

@dataclass
class Route:
    """One way from the client to the broker: direct, relay or quarantine."""

    name: str
    tansu: Tansu
    bootstrap: str
    middle: subprocess.Popen | None = None  # relay or proxy process
    stop_extra: list = field(default_factory=list)

    def stop(self) -> None:
        for s in self.stop_extra:
            s()
        self.tansu.stop()


def start_route(name: str, workdir: Path, profile: str) -> Route:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    if name == "direct":
        tansu = Tansu(port=free_port(), workdir=d).start()
        return Route(name, tansu, tansu.address)
    if name == "relay":
        relay_port = free_port()
        tansu = Tansu(port=free_port(), advertised_port=relay_port, workdir=d).start()
        binary = REPO_ROOT / "target" / profile / "tcp-relay"
        relay = subprocess.Popen([str(binary), f"127.0.0.1:{relay_port}", tansu.address],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(d / "relay.log", "wb"))
        wait_port("127.0.0.1", relay_port, 10, relay)
        return Route(name, tansu, f"127.0.0.1:{relay_port}", relay,
                     [lambda: stop_process(relay)])
    if name in ("quarantine", "passthrough"):
        # "quarantine" runs with its defaults (poison detection on for every topic and
        # group); "passthrough" turns detection off: the proxy alone.
        tansu = Tansu(port=free_port(), workdir=d).start()
        extra = "watch:\n  enabled: false\n" if name == "passthrough" else ""
        proxy = Quarantine(upstream=tansu.address, profile=profile, log_level="warn",
                           workdir=d, extra_yaml=extra).start()
        return Route(name, tansu, proxy.bootstrap, proxy.proc, [proxy.stop])
    raise ValueError(name)


# ---------------------------------------------------------------- workloads

def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(timeout=15)


def produce_throughput(bootstrap: str, topic: str, records: int, size: int) -> float:
    """Seconds to produce and have acknowledged ``records`` records of ``size`` bytes."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5,
                  "batch.size": 1_000_000, "batch.num.messages": 100_000,
                  "queue.buffering.max.messages": 1_000_000,
                  "queue.buffering.max.kbytes": 2_097_151, "compression.type": "none"})
    payload = os.urandom(size)
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, payload, partition=i % PARTITIONS, on_delivery=report)
                break
            except BufferError:
                p.poll(0.001)
    left = p.flush(120)
    elapsed = time.perf_counter() - start
    if left or failed:
        raise RuntimeError(f"produce: {left} undelivered, {len(failed)} failed: {failed[:2]}")
    return elapsed


def consume_throughput(bootstrap: str, topic: str, records: int) -> float:
    """Seconds to consume ``records`` records from the beginning of every partition, as a
    member of a consumer group (so quarantine's detection follows the group), timed from the
    first record received (the group join is not part of the figure)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                  "auto.commit.interval.ms": 1000, "session.timeout.ms": 6000,
                  "fetch.wait.max.ms": 20,
                  "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 4_194_304,
                  "queued.min.messages": 200_000, "queued.max.messages.kbytes": 1_048_576})
    got = 0
    start = None
    c.subscribe([topic])
    deadline = time.monotonic() + 300
    try:
        while got < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consume: only {got} of {records} records")
            for msg in c.consume(num_messages=10_000, timeout=0.05):
                if msg.error() is None:
                    if start is None:
                        start = time.perf_counter()
                    got += 1
        return time.perf_counter() - start
    finally:
        c.close()


def round_trips(bootstrap: str, topic: str, requests: int) -> HdrHistogram:
    """Microseconds per small acks=1 produce, one request in flight."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 0,
                  "max.in.flight.requests.per.connection": 1, "compression.type": "none"})
    hist = HdrHistogram(1, 60_000_000, 3)
    done = []
    payload = b"x" * 100
    for i in range(requests + 200):  # the first 200 warm up connections and metadata
        done.clear()
        start = time.perf_counter()
        p.produce(topic, payload, partition=0, on_delivery=lambda e, m: done.append(e))
        while not done:
            p.poll(0.05)
        micros = (time.perf_counter() - start) * 1e6
        if done[0] is not None:
            raise RuntimeError(f"round trip failed: {done[0]}")
        if i >= 200:
            hist.record_value(max(1, int(micros)))
    p.flush(10)
    return hist


def idle_connections_rss(pid: int, bootstrap: str, count: int = 100) -> int:
    """RSS (KiB) of ``pid`` while ``count`` client connections are open and idle, each
    having made one ApiVersions round trip (so its upstream side is connected too)."""
    host, port = bootstrap.split(":")
    socks = []
    try:
        for i in range(count):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(kafka_wire.api_versions_request(i))
            if kafka_wire.read_frame(s) is None:
                raise RuntimeError("connection closed during ApiVersions")
            socks.append(s)
        time.sleep(1.0)
        return status_kib(pid, "VmRSS")
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- one path

@dataclass
class Result:
    produce_mbs: float
    consume_mbs: float
    produce_rps: float
    consume_rps: float
    p50: float
    p99: float
    p999: float
    cpu_per_gb: float | None = None
    peak_rss_kib: int | None = None
    rss_idle_kib: int | None = None
    rss_100_kib: int | None = None


@dataclass
class Round:
    """What one round measured on one route."""

    produce_s: float
    consume_s: float
    hist: HdrHistogram
    cpu_s: float | None
    peak_rss_kib: int | None
    rss_idle_kib: int | None
    rss_100_kib: int | None


def measure_round(name: str, rnd: int, args, workdir: Path) -> Round:
    """Starts a fresh broker (and relay or proxy), warms up, then measures once."""
    route = start_route(name, workdir / f"round{rnd}", args.profile)
    try:
        pid = route.middle.pid if route.middle else None
        rss_idle = rss_100 = None
        if pid:
            time.sleep(0.5)
            rss_idle = status_kib(pid, "VmRSS")
            rss_100 = idle_connections_rss(pid, route.bootstrap)
        warm = max(1000, args.records // 20)
        create_topic(route.bootstrap, "warmup")
        produce_throughput(route.bootstrap, "warmup", warm, args.size)
        consume_throughput(route.bootstrap, "warmup", warm)

        cpu_before = cpu_seconds(pid) if pid else 0.0
        create_topic(route.bootstrap, "bench")
        produce_s = produce_throughput(route.bootstrap, "bench", args.records, args.size)
        consume_s = consume_throughput(route.bootstrap, "bench", args.records)
        cpu = (cpu_seconds(pid) - cpu_before) if pid else None

        create_topic(route.bootstrap, "latency")
        hist = round_trips(route.bootstrap, "latency", args.latency_requests)
        return Round(produce_s, consume_s, hist, cpu,
                     status_kib(pid, "VmHWM") if pid else None, rss_idle, rss_100)
    finally:
        route.stop()


def summarize(rounds: list[Round], args) -> Result:
    """Median throughput over the rounds, latency over all round trips of all rounds."""
    hist = HdrHistogram(1, 60_000_000, 3)
    for r in rounds:
        hist.add(r.hist)
    mb = args.records * args.size / 1e6
    p = statistics.median(r.produce_s for r in rounds)
    c = statistics.median(r.consume_s for r in rounds)
    has_pid = rounds[0].cpu_s is not None
    moved_gb = 2 * len(rounds) * args.records * args.size / 1e9
    return Result(
        produce_mbs=mb / p, consume_mbs=mb / c,
        produce_rps=args.records / p, consume_rps=args.records / c,
        p50=hist.get_value_at_percentile(50), p99=hist.get_value_at_percentile(99),
        p999=hist.get_value_at_percentile(99.9),
        cpu_per_gb=sum(r.cpu_s for r in rounds) / moved_gb if has_pid else None,
        peak_rss_kib=max(r.peak_rss_kib for r in rounds) if has_pid else None,
        rss_idle_kib=max(r.rss_idle_kib for r in rounds) if has_pid else None,
        rss_100_kib=max(r.rss_100_kib for r in rounds) if has_pid else None)


# ---------------------------------------------------------------- report

def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(res: dict[str, Result]) -> str:
    d, r, q = res.get("direct"), res.get("relay"), res.get("quarantine")
    pt = res.get("passthrough")

    rows = [
        ("produce throughput (MB/s)", "produce_mbs", "{:.1f}"),
        ("produce throughput (records/s)", "produce_rps", "{:,.0f}"),
        ("consume throughput (MB/s)", "consume_mbs", "{:.1f}"),
        ("consume throughput (records/s)", "consume_rps", "{:,.0f}"),
        ("produce round trip p50 (µs)", "p50", "{:.0f}"),
        ("produce round trip p99 (µs)", "p99", "{:.0f}"),
        ("produce round trip p99.9 (µs)", "p999", "{:.0f}"),
        ("CPU seconds per GB moved", "cpu_per_gb", "{:.2f}"),
        ("peak RSS (MiB)", "peak_rss_kib", "{:.1f}"),
        ("RSS at start (MiB)", "rss_idle_kib", "{:.1f}"),
        ("RSS with 100 idle connections (MiB)", "rss_100_kib", "{:.1f}"),
    ]
    out = ["| metric | direct | tcp-relay | quarantine, detection off | quarantine, detection on "
           "| on / direct | on / relay | off / relay | on / off |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, attr, fmt in rows:
        def get(x: Result | None, attr=attr):
            v = getattr(x, attr) if x else None
            return v / 1024 if v is not None and attr.endswith("_kib") else v
        cells = [fmt.format(get(x)) if get(x) is not None else "-" for x in (d, r, pt, q)]
        out.append(f"| {label} | " + " | ".join(cells)
                   + f" | {ratio(get(q), get(d))} | {ratio(get(q), get(r))}"
                   + f" | {ratio(get(pt), get(r))} | {ratio(get(q), get(pt))} |")
    if q and r:
        out.append("")
        out.append(f"Added p99 over the relay: {q.p99 - r.p99:+.0f} µs; "
                   f"added p50: {q.p50 - r.p50:+.0f} µs.")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024, help="record value size in bytes")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds; each measures every route once, on a fresh broker")
    ap.add_argument("--latency-requests", type=int, default=2000,
                    help="round trips per route per round")
    ap.add_argument("--paths", default="direct,relay,passthrough,quarantine")
    ap.add_argument("--profile", default="release",
                    help="cargo profile of the binaries (debug only to try the script out)")
    args = ap.parse_args()

    for name in args.paths.split(","):
        if name in ("relay", "quarantine", "passthrough"):
            binary = REPO_ROOT / "target" / args.profile / ("tcp-relay" if name == "relay"
                                                            else "quarantine")
            if not binary.exists():
                print(f"{binary.relative_to(REPO_ROOT)} missing: run cargo build "
                      f"--profile {args.profile}", file=sys.stderr)
                return 1

    names = args.paths.split(",")
    rounds: dict[str, list[Round]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # Routes take turns, round after round, so background load hits all of them alike.
        for rnd in range(args.rounds):
            for name in names:
                print(f"round {rnd + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                rounds[name].append(measure_round(name, rnd, args, Path(tmp)))
    results = {n: summarize(rs, args) for n, rs in rounds.items()}

    print(f"{args.records:,} records of {args.size} B, throughput median of {args.rounds} "
          f"rounds; {args.rounds * args.latency_requests:,} round trips per route; "
          f"{args.profile} build; librdkafka "
          f"{confluent_kafka.libversion()[0]}; {os.cpu_count()} cores; tansu in memory.\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
