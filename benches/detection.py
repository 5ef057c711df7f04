"""Benchmark: how fast quarantine gets a group past its poison records, and what it costs
the healthy ones. Run by hand, not in CI (each scenario crash-loops real consumers).

Each scenario runs on a fresh tansu broker (in memory) with one quarantine proxy per
sidecar, with the detection defaults (``max_deliveries: 3``, fast failover on unless
``--failover off``):

- failure mode x client: ``crash`` with librdkafka (``consume(num_messages=10)``, one
  commit per batch, ``os._exit`` on a bad record, restarted by a supervisor after 1 s),
  the same as a KIP-848 member (``crash-rdkafka-kip848``: ``group.protocol=consumer``,
  tansu behind the test KIP-848 gate, whose session timeout is ``--session-ms``),
  ``seek`` with kafka-python (commit per record, seek back to the bad record, retry
  after 100 ms), ``crash`` with kafkajs (commit per record);
- poison partitions: 1 or 3 of 6 (one bad record each, in the middle of a 125-record
  batch);
- sidecars: 1 (one replica, one proxy) or 3 (three replicas of the application in one
  group, each through its own proxy).

Per scenario it prints: failures on each poison record until it was diverted (median and
max over the poison records: every time an application met it), seconds from the start
until each was diverted (median, max), the longest time a partition without poison went
without a record being processed while it still had some (healthy records held back, by
the search or by the crash-restarts), and the total crash-restarts. Everything is counted:
a run that loses a record or diverts a healthy one is reported as FAILED.

Run after `cargo build` (or `--profile release` after `cargo build --release`), with the
venv of scripts/setup.sh:
    python benches/detection.py [--failover on|off] [--scenarios crash-rdkafka,...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "proto-tests"))

from apps.supervisor import Supervisor, app_command  # noqa: E402
from harness import Tansu, free_port, kip848_gate_for  # noqa: E402
from poison_support import (Offsets, WatchedQuarantine, create_topic, end_offsets,  # noqa: E402
                            is_poison, order_items, produce, read_topic)

PARTITIONS = 6
PER_PARTITION = 300
POISON_AT = [(0, 187), (2, 62), (4, 212)]
BATCHES = {"batch.num.messages": 125, "linger.ms": 100}

CLIENTS = {
    "crash-rdkafka": ("rdkafka", {"mode": "crash", "commit": "batch", "consume_batch": 10},
                      "lz4"),
    "crash-rdkafka-kip848": ("rdkafka", {"mode": "crash", "commit": "batch",
                                         "consume_batch": 10, "group_protocol": "consumer"},
                             "lz4"),
    "seek-kafka-python": ("kafka-python", {"mode": "seek", "commit": "each"}, "lz4"),
    # kafkajs reads no lz4 without an extra codec.
    "crash-kafkajs": ("kafkajs", {"mode": "crash", "commit": "each"}, "gzip"),
}


def run(workdir: Path, scenario: str, poisons: int, sidecars: int, failover: bool,
        profile: str, session_ms: int, timeout: float) -> dict:
    client, spec, codec = CLIENTS[scenario]
    tansu = Tansu(port=free_port(), workdir=workdir / "tansu")
    (workdir / "tansu").mkdir(parents=True)
    gate = kip848_gate_for(tansu, spec.get("group_protocol", "classic"))
    if gate is not None:
        gate.session_timeout_ms = session_ms
    broker = gate.address if gate is not None else tansu.address
    watch = ("watch:\n  enabled: true\n"
             f"  fast_failover: {{enabled: {'true' if failover else 'false'}}}\n")
    proxies = [WatchedQuarantine(upstream=broker, profile=profile,
                                 extra_yaml=watch + f"  instance: pod-{i}\n",
                                 workdir=workdir / f"q{i}") for i in range(sidecars)]
    for p in proxies:
        p.workdir.mkdir(parents=True)
    tansu.start()
    apps: list[Supervisor] = []
    try:
        for p in proxies:
            p.start()
        poison = set(POISON_AT[:poisons])
        topic = create_topic(proxies[0].bootstrap, f"bench-{scenario}", PARTITIONS)
        produced = produce(proxies[0].bootstrap, topic,
                           order_items(PARTITIONS, PER_PARTITION, poison=poison),
                           **{**BATCHES, "compression.type": codec})
        ends = end_offsets(produced, PARTITIONS)
        group = topic + ".g"
        t0 = time.time()
        for i, p in enumerate(proxies):
            s = {**spec, "bootstrap": p.bootstrap, "topic": topic, "group": group,
                 "client_id": f"bench-{i}", "session_timeout_ms": session_ms,
                 "heartbeat_ms": 1000, "max_poll_interval_ms": 30000}
            apps.append(Supervisor(app_command(client, s), workdir / f"app{i}.log",
                                   restart_delay=1.0).start())
        offsets = Offsets(broker, group)
        done = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = offsets.committed(topic, PARTITIONS)
            if all(c.get(p, -1) >= e for p, e in ends.items()):
                done = True
                break
            time.sleep(0.5)
        offsets.close()
        for a in apps:
            a.stop()
        letters = read_topic(broker, f"{topic}.dlq", at_least=0, settle=1.0)
        bad = {r.at for r in produced if is_poison(r.value)}
        in_dlq = {(int(r.header("__quarantine.partition")), int(r.header("__quarantine.offset")))
                  for r in letters}
        diverted_at = {(int(r.header("__quarantine.partition")),
                        int(r.header("__quarantine.offset"))):
                       int(r.header("__quarantine.diverted.ms")) / 1000 - t0 for r in letters}
        processed: set[tuple[int, int]] = set()
        failures: dict[tuple[int, int], int] = {b: 0 for b in bad}
        gaps: list[float] = []
        healthy = [p for p in range(PARTITIONS) if p not in {b[0] for b in bad}]
        for a in apps:
            processed |= a.processed()
            for at in a.poison_seen():
                if at in failures:
                    failures[at] += 1
        # Longest stretch a poison-free partition went without progress while lagging.
        events = sorted((e["t"], e["p"], e["o"]) for a in apps for e in a.of("processed"))
        for p in healthy:
            times = [t for t, pp, o in events if pp == p]
            last_o = max((o for _, pp, o in events if pp == p), default=-1)
            if last_o + 1 < ends[p] or not times:
                gaps.append(float("inf"))
                continue
            start = min(e["t"] for a in apps for e in a.of("start")) if events else 0.0
            gaps.append(max(b - a for a, b in zip([start] + times, times)))
        lost = {r.at for r in produced} - processed - in_dlq
        ok = done and in_dlq == bad and not lost
        return {
            "ok": ok, "done": done, "lost": len(lost), "wrong": len(in_dlq - bad),
            "failures": list(failures.values()),
            "seconds": [diverted_at.get(b, float("inf")) for b in bad],
            "held": max(gaps) if gaps else 0.0,
            "crashes": sum(len(a.exits) for a in apps) - len(apps),
        }
    finally:
        for a in apps:
            a.stop()
        for p in proxies:
            p.stop()
        tansu.stop()
        if gate is not None:
            gate.stop()


def med_max(v: list[float]) -> str:
    if not v:
        return "-"
    fmt = (lambda x: f"{x:.0f}") if all(float(x).is_integer() for x in v) else (lambda x: f"{x:.1f}")
    return f"{fmt(statistics.median(v))} / {fmt(max(v))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(CLIENTS))
    ap.add_argument("--poisons", default="1,3")
    ap.add_argument("--sidecars", default="1,3")
    ap.add_argument("--failover", default="on", choices=["on", "off"])
    ap.add_argument("--session-ms", type=int, default=10000)
    ap.add_argument("--profile", default="debug")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    print(f"{PARTITIONS} partitions x {PER_PARTITION} records; session.timeout.ms "
          f"{a.session_ms}; fast failover {a.failover}; detection defaults; tansu in memory")
    print()
    print("| failure mode, client | poison partitions | sidecars | failures to divert "
          "(median / max) | seconds to divert (median / max) | longest healthy hold (s) "
          "| crash-restarts | counted |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for scenario in a.scenarios.split(","):
        for poisons in (int(x) for x in a.poisons.split(",")):
            for sidecars in (int(x) for x in a.sidecars.split(",")):
                workdir = Path(tempfile.mkdtemp(prefix="bench-detection-"))
                try:
                    r = run(workdir, scenario, poisons, sidecars, a.failover == "on",
                            a.profile, a.session_ms, a.timeout)
                except Exception as e:  # one broken scenario must not hide the others
                    print(f"| {scenario} | {poisons} | {sidecars} | error: {e} |")
                    continue
                finally:
                    if not a.keep:
                        shutil.rmtree(workdir, ignore_errors=True)
                counted = ("ok" if r["ok"] else
                           f"FAILED (done={r['done']}, lost={r['lost']}, healthy in DLQ={r['wrong']})")
                print(f"| {scenario} | {poisons} | {sidecars} | {med_max(r['failures'])} | "
                      f"{med_max(r['seconds'])} | {r['held']:.1f} | {r['crashes']} | {counted} |",
                      flush=True)


if __name__ == "__main__":
    main()
