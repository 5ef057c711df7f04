"""Benchmark: peak memory (RSS) and time of the DLQ tools on a large DLQ.

Setup: one tansu broker (in memory). A source topic and its DLQ, both with 3 partitions;
``--records`` dead-letter records (``--size``-byte JSON values, the quarantine headers the
proxy writes) are produced straight to the DLQ. Then each tool runs once, as a separate
process, against the broker:

    quarantine dlq stats DLQ
    quarantine dlq inspect DLQ --json --show-payload      (output to /dev/null)
    quarantine dlq replay DLQ --dry-run
    quarantine dlq replay DLQ                             (writes every record back)
    quarantine dlq stats DLQ                              (now with a full ledger)

Reported per tool: peak RSS (VmHWM of that process, polled every 20 ms) and seconds. The
point is that RSS stays flat whatever the DLQ's size: run it with two sizes to see it.

Run after `cargo build --release`, with the venv of scripts/setup.sh:
    python benches/dlq_memory.py [--records 1000000] [--size 200] [--binary PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "proto-tests"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Tansu, free_port  # noqa: E402

PARTITIONS = 3


def headers(topic: str, partition: int, offset: int) -> list:
    return [("__quarantine.group", b"orders"), ("__quarantine.topic", topic.encode()),
            ("__quarantine.partition", str(partition).encode()),
            ("__quarantine.offset", str(offset).encode()),
            ("__quarantine.reason", b"crash-loop"),
            ("__quarantine.diverted.ms", str(1_765_000_000_000 + offset).encode()),
            ("__quarantine.replay.count", b"0")]


def fill(broker: str, topic: str, dlq: str, records: int, size: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1),
                                  NewTopic(dlq, PARTITIONS, 1)]).values():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": broker, "linger.ms": 50, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 1_000_000})
    pad = "x" * max(0, size - 40)
    for i in range(records):
        part = i % PARTITIONS
        value = json.dumps({"order": i, "pad": pad}).encode()
        while True:
            try:
                p.produce(dlq, key=f"order-{i}".encode(), value=value, partition=part,
                          headers=headers(topic, part, i // PARTITIONS))
                break
            except BufferError:
                p.poll(0.1)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(300) == 0


def vm_hwm_kib(pid: int) -> int | None:
    """The process's peak RSS so far (VmHWM), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(binary: str, args: list[str]) -> tuple[float, float, int]:
    """Runs one tool; returns (peak RSS MiB, seconds, exit code). The peak is VmHWM read
    from /proc while it runs (wait4's ru_maxrss would include the forking Python process's
    RSS from before exec)."""
    start = time.monotonic()
    peak = 0
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen([binary, "dlq", *args], stdout=null, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        while proc.poll() is None:
            hwm = vm_hwm_kib(proc.pid)
            if hwm is not None:
                peak = max(peak, hwm)
            time.sleep(0.02)
    took = time.monotonic() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.returncode
    if code != 0:
        print(f"  exit {code}: {err.strip()[-500:]}", file=sys.stderr)
    return peak / 1024, took, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--binary", default=str(REPO_ROOT / "target" / "release" / "quarantine"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dlq-memory-"))
    tansu = Tansu(port=free_port(), workdir=work).start()
    try:
        broker = tansu.address
        topic, dlq = "orders", "orders.dlq"
        t0 = time.monotonic()
        fill(broker, topic, dlq, a.records, a.size)
        print(f"DLQ {dlq}: {a.records:,} records of ~{a.size} bytes, filled in "
              f"{time.monotonic() - t0:.0f} s")
        print(f"{'command':<48} {'peak RSS MiB':>12} {'seconds':>8}")
        for args in (["stats", dlq], ["inspect", dlq, "--json", "--show-payload"],
                     ["replay", dlq, "--dry-run", "--progress", "none"],
                     ["replay", dlq, "--progress", "none"], ["stats", dlq]):
            rss, took, code = measure(a.binary, args + ["--bootstrap", broker])
            label = " ".join(args[:1] + args[2:])
            print(f"{label:<48} {rss:>12.1f} {took:>8.1f}" + ("" if code == 0 else f"  exit {code}"))
    finally:
        tansu.stop()


if __name__ == "__main__":
    main()
