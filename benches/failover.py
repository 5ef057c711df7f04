"""Benchmark: how long a SIGKILLed consumer's partitions stay unconsumed, with fast
failover (``watch.fast_failover``) on and off. Run by hand, not in CI.

Two scenarios, each on a fresh tansu broker (in memory) and quarantine proxy per mode:

- ``takeover``: two librdkafka members of one group (same client id) share a 4-partition
  topic; one is SIGKILLed. Measured: seconds from the kill until the survivor is assigned
  every partition.
- ``restart``: one librdkafka member under a supervisor that restarts it 0.2 s after it
  exits (as a container runtime would); it is SIGKILLed. Measured: seconds from the kill
  until the restarted process processes a record again.
- ``divert`` (not run by default): the same supervised member crashes (exit 3, no leave)
  on a poison record, again and again, until quarantine has found the record and written
  it to the DLQ (detection defaults). Measured: seconds from the first crash until the
  record is diverted.

Members use ``session.timeout.ms`` = ``--session-ms`` (default 45000, Apache Kafka's
default since 3.0) and a 1 s heartbeat. Reported: the median of ``--runs`` runs per
scenario and mode, and each run's figure.

Run after `cargo build` (or `--profile release` after `cargo build --release`), with the
venv of scripts/setup.sh:
    python benches/failover.py [--runs 3] [--session-ms 45000] [--grace 1s]
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
from harness import Quarantine, Tansu, free_port  # noqa: E402
from harness import sum_metric  # noqa: E402
from poison_support import create_topic, order_items, produce  # noqa: E402

PARTITIONS = 4


def wait(predicate, timeout: float, poll: float = 0.02) -> float | None:
    """Monotonic time at which ``predicate`` first held, None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(poll)
    return None


def assignment(app: Supervisor) -> set[int]:
    assigned = app.of("assigned")
    return set(assigned[-1]["partitions"]) if assigned else set()


class Stack:
    def __init__(self, workdir: Path, profile: str, failover: bool, grace: str):
        self.tansu = Tansu(port=free_port(), workdir=workdir / "tansu")
        (workdir / "tansu").mkdir(parents=True)
        (workdir / "quarantine").mkdir(parents=True)
        yaml = (f"watch:\n  enabled: true\n  fast_failover:\n    enabled: {str(failover).lower()}\n"
                f"    grace: {grace}\n")
        self.proxy = Quarantine(upstream="", profile=profile, log_level="info",
                                extra_yaml=yaml, workdir=workdir / "quarantine")

    def __enter__(self) -> "Stack":
        self.tansu.start()
        self.proxy.upstream = self.tansu.address
        self.proxy.start()
        return self

    def __exit__(self, *exc) -> None:
        self.proxy.stop()
        self.tansu.stop()


RESTART_DELAY = 0.2


def app(stack: Stack, workdir: Path, name: str, topic: str, session_ms: int,
        max_runs: int, sleep_ms: int, mode: str = "ok") -> Supervisor:
    spec = {"bootstrap": stack.proxy.bootstrap, "topic": topic, "group": f"{topic}.g",
            "mode": mode, "commit": "each", "sleep_ms": sleep_ms,
            "session_timeout_ms": session_ms, "heartbeat_ms": 1000}
    return Supervisor(app_command("rdkafka", spec), workdir / f"{name}.log",
                      max_runs=max_runs, restart_delay=RESTART_DELAY).start()


def takeover(stack: Stack, workdir: Path, run: int, session_ms: int) -> float:
    topic = create_topic(stack.tansu.address, f"takeover-{run}", PARTITIONS)
    produce(stack.tansu.address, topic, order_items(PARTITIONS, 2000))
    victim = app(stack, workdir, f"victim-{run}", topic, session_ms, 1, 20)
    survivor = app(stack, workdir, f"survivor-{run}", topic, session_ms, 1, 20)
    try:
        shared = wait(lambda: assignment(victim) and assignment(survivor)
                      and assignment(victim) | assignment(survivor) == set(range(PARTITIONS))
                      and not assignment(victim) & assignment(survivor), 120)
        if shared is None:
            raise RuntimeError("members never shared the partitions\n" + victim.summary())
        time.sleep(1)
        killed = time.monotonic()
        victim.kill_current()
        done = wait(lambda: assignment(survivor) == set(range(PARTITIONS)),
                    3 * session_ms / 1000)
        if done is None:
            raise RuntimeError("survivor never got every partition\n" + survivor.summary())
        return done - killed
    finally:
        victim.stop()
        survivor.stop()


def restart(stack: Stack, workdir: Path, run: int, session_ms: int) -> float:
    topic = create_topic(stack.tansu.address, f"restart-{run}", PARTITIONS)
    produce(stack.tansu.address, topic, order_items(PARTITIONS, 2000))
    consumer = app(stack, workdir, f"restart-{run}", topic, session_ms, 5, 20)
    try:
        if wait(lambda: len(consumer.processed()) >= 5, 120) is None:
            raise RuntimeError("consumer never consumed\n" + consumer.summary())
        time.sleep(1)
        killed = time.monotonic()
        consumer.kill_current()
        done = wait(lambda: any(e["run"] >= 2 for e in consumer.of("processed")),
                    3 * session_ms / 1000)
        if done is None:
            raise RuntimeError("restarted process never consumed\n" + consumer.summary())
        return done - killed
    finally:
        consumer.stop()


def divert(stack: Stack, workdir: Path, run: int, session_ms: int) -> float:
    topic = create_topic(stack.tansu.address, f"divert-{run}", 2)
    produce(stack.tansu.address, topic, order_items(2, 100, poison={(0, 40)}))
    consumer = app(stack, workdir, f"divert-{run}", topic, session_ms, 100, 0, mode="crash")
    try:
        first = wait(lambda: consumer.poison_seen(), 120)
        if first is None:
            raise RuntimeError("the poison record was never met\n" + consumer.summary())
        done = wait(lambda: sum_metric(stack.proxy.metrics_text(),
                                       "quarantine_records_diverted_total") >= 1,
                    30 * session_ms / 1000, poll=0.1)
        if done is None:
            raise RuntimeError("never diverted\n" + consumer.summary())
        return done - first
    finally:
        consumer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--session-ms", type=int, default=45000)
    ap.add_argument("--grace", default="1s")
    ap.add_argument("--profile", default="debug", help="cargo profile of the proxy binary")
    ap.add_argument("--modes", default="on,off", help="fast failover modes to run: on,off")
    ap.add_argument("--scenarios", default="takeover,restart")
    ap.add_argument("--restart-delay", type=float, default=0.2,
                    help="seconds the supervisor waits before restarting the killed process")
    ap.add_argument("--keep", action="store_true", help="keep logs and work directories")
    args = ap.parse_args()
    global RESTART_DELAY
    RESTART_DELAY = args.restart_delay
    modes = [m == "on" for m in args.modes.split(",")]
    scenarios = {"takeover": takeover, "restart": restart, "divert": divert}
    results: dict[tuple[str, bool], list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="failover-bench-"))
    try:
        for failover in modes:
            for name in args.scenarios.split(","):
                scenario = scenarios[name]
                for run in range(args.runs):
                    workdir = root / f"{name}-{failover}-{run}"
                    with Stack(workdir, args.profile, failover, args.grace) as stack:
                        seconds = scenario(stack, workdir, run, args.session_ms)
                    results.setdefault((name, failover), []).append(seconds)
                    print(f"{name:9} fast_failover={'on ' if failover else 'off'} run {run + 1}: "
                          f"{seconds:.2f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    print()
    print(f"SIGKILLed librdkafka consumer, session.timeout.ms={args.session_ms}, heartbeat 1 s, "
          f"grace {args.grace}, median of {args.runs} runs, proxy profile {args.profile}")
    print()
    print("| seconds from SIGKILL until | fast failover off | fast failover on | runs (off; on) |"
          if "divert" not in args.scenarios else
          "| seconds | fast failover off | fast failover on | runs (off; on) |")
    print("|---|---:|---:|---|")
    labels = {"takeover": "the surviving member is assigned every partition",
              "restart": "the restarted process consumes again",
              "divert": "first crash on a poison record until it is diverted (crash loop)"}
    for name in args.scenarios.split(","):
        off, on = results.get((name, False), []), results.get((name, True), [])
        median = lambda xs: f"{statistics.median(xs):.1f}" if xs else "-"  # noqa: E731
        runs = (", ".join(f"{s:.1f}" for s in off) + "; " + ", ".join(f"{s:.1f}" for s in on))
        print(f"| {labels[name]} | {median(off)} | {median(on)} | {runs} |")


if __name__ == "__main__":
    main()
