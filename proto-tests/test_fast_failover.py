"""Fast failover (``watch.fast_failover``): when every connection of a consumer member
closed without a leave and the member did not come back within the grace, the proxy leaves
the group on its behalf, so its partitions move without waiting for session.timeout.ms.

Real consumers (librdkafka under the supervisor, kafka-python in this process) go through
the proxy to the real broker. Sessions are long (30 s) so that only a leave can move
partitions quickly, but no test asserts a duration: each asserts what the proxy did (its
metrics and log) and what the group did (assignments, every record consumed).

Near misses: a kafka-python consumer that loses only its coordinator connection, then
every connection at once, while its process lives on, is not left for (it comes back with
its member id, or fetches its partitions on a new connection, within the grace); a static
member (``group.instance.id``) is left alone by default.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from apps.supervisor import Supervisor, app_command
from harness import quarantine_bin
from poison_support import (create_topic, order_items, produce, stack_fixture, wait_for,
                            watch_yaml)

GRACE = "1s"
FAILOVER_YAML = watch_yaml() + f"  fast_failover:\n    enabled: true\n    grace: {GRACE}\n"
SESSION_MS = 30000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from stack_fixture(tmp_path_factory, "fast_failover", watch=FAILOVER_YAML)


def metric(proxy, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in proxy.metrics_text().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def leaves_sent(proxy, group: str) -> float:
    return metric(proxy, "quarantine_member_leaves_sent_total", group=group)


def skipped(proxy, group: str, reason: str) -> float:
    return metric(proxy, "quarantine_member_leaves_skipped_total", group=group, reason=reason)


def rdkafka_app(stack, tmp_path: Path, name: str, topic: str, group: str, **spec) -> Supervisor:
    """A librdkafka consumer app run once (no restart), committing after every record."""
    spec = {"bootstrap": stack.bootstrap, "topic": topic, "group": group, "mode": "ok",
            "commit": "each", "session_timeout_ms": SESSION_MS, "heartbeat_ms": 1000, **spec}
    return Supervisor(app_command("rdkafka", spec), tmp_path / f"{name}.log",
                      max_runs=1).start()


def latest_assignment(app: Supervisor) -> set[int]:
    assigned = app.of("assigned")
    return set(assigned[-1]["partitions"]) if assigned else set()


def test_sigkilled_member_is_left_for_and_the_survivor_consumes_every_record(stack, tmp_path):
    """Two librdkafka members with the same client id; one is SIGKILLed mid-stream. The
    proxy leaves for it (metric, log line); the survivor is assigned every partition and
    every record is consumed by one member or the other."""
    partitions = 4
    topic = create_topic(stack.broker, f"ff-kill-{tmp_path.name[-12:]}", partitions)
    group = f"{topic}.g"
    produced = produce(stack.broker, topic, order_items(partitions, 60))
    everything = {r.at for r in produced}
    victim = rdkafka_app(stack, tmp_path, "victim", topic, group, sleep_ms=40)
    survivor = rdkafka_app(stack, tmp_path, "survivor", topic, group, sleep_ms=5)
    apps = (victim, survivor)

    def diagnose() -> str:
        return "\n".join(a.summary() for a in apps)

    try:
        wait_for(lambda: latest_assignment(victim) and latest_assignment(survivor)
                 and latest_assignment(victim) | latest_assignment(survivor)
                 == set(range(partitions))
                 and not latest_assignment(victim) & latest_assignment(survivor)
                 and len(victim.processed()) >= 3,
                 60, "both members to share the partitions", diagnose)
        victims_partitions = latest_assignment(victim)
        assert leaves_sent(stack.proxy, group) == 0
        victim.kill_current()  # SIGKILL: no LeaveGroup, no close, no commit
        wait_for(lambda: latest_assignment(survivor) == set(range(partitions)),
                 SESSION_MS / 1000 + 15, "the survivor to be assigned every partition",
                 diagnose)
        assert leaves_sent(stack.proxy, group) == 1, stack.proxy.metrics_text()
        assert metric(stack.proxy, "quarantine_member_leave_failures_total", group=group) == 0
        log = stack.proxy.log_text()
        assert re.search(r"left the group for a consumer whose connections all closed"
                         rf".*group={re.escape(group)}", log), log[-3000:]
        assert victims_partitions <= latest_assignment(survivor)
        wait_for(lambda: victim.processed() | survivor.processed() >= everything, 60,
                 "every record to be consumed", diagnose)
        # At least once: every record produced was processed by a member.
        assert not everything - (victim.processed() | survivor.processed())
    finally:
        for a in apps:
            a.stop()


def test_crash_restarted_member_is_left_for_and_its_restart_consumes_everything(stack, tmp_path):
    """One librdkafka member under a supervisor, SIGKILLed mid-stream and restarted at once:
    the restart's JoinGroup is held while the proxy leaves for the dead member (so the
    coordinator does not wait for a member that will never rejoin), the restarted process
    consumes again, and every record is consumed (at least once)."""
    partitions = 2
    topic = create_topic(stack.broker, f"ff-restart-{tmp_path.name[-12:]}", partitions)
    group = f"{topic}.g"
    produced = produce(stack.broker, topic, order_items(partitions, 40))
    everything = {r.at for r in produced}
    spec = {"bootstrap": stack.bootstrap, "topic": topic, "group": group, "mode": "ok",
            "commit": "each", "session_timeout_ms": SESSION_MS, "heartbeat_ms": 1000,
            "sleep_ms": 50}
    app = Supervisor(app_command("rdkafka", spec), tmp_path / "restart.log", max_runs=2).start()
    try:
        wait_for(lambda: len(app.processed()) >= 3, 60, "the first run to consume", app.summary)
        app.kill_current()
        wait_for(lambda: any(e["run"] == 2 for e in app.of("processed")),
                 SESSION_MS / 1000 + 15, "the restarted process to consume", app.summary)
        assert leaves_sent(stack.proxy, group) == 1, stack.proxy.metrics_text()
        log = stack.proxy.log_text()
        assert re.search(r"left the group for a consumer whose connections all closed"
                         rf".*group={re.escape(group)}", log), log[-3000:]
        wait_for(lambda: app.processed() >= everything, 60, "every record to be consumed",
                 app.summary)
    finally:
        app.stop()


class Rebalances(ConsumerRebalanceListener):
    def __init__(self):
        self.revoked = 0
        self.assigned: list[set[int]] = []

    def on_partitions_revoked(self, revoked):
        if revoked:
            self.revoked += 1

    def on_partitions_assigned(self, assigned):
        self.assigned.append({tp.partition for tp in assigned})


class InProcessConsumer:
    """A kafka-python consumer polled in a thread of this process, so the test can cut its
    sockets while the process (and the consumer) live on."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        self.rebalances = Rebalances()
        self.processed: set[tuple[int, int]] = set()
        self.errors: list[str] = []
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id="ff-kafka-python",
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=30000, heartbeat_interval_ms=1000, max_poll_records=5,
            fetch_max_wait_ms=50)
        self.consumer.subscribe([topic], listener=self.rebalances)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batches = self.consumer.poll(timeout_ms=100)
                for records in batches.values():
                    for r in records:
                        self.processed.add((r.partition, r.offset))
                if batches:
                    self._stop.wait(0.05)  # slow enough to still be consuming when cut
                    self.consumer.commit()
            except Exception as e:  # a commit during a rebalance; the loop goes on
                self.errors.append(repr(e))

    def sockets(self, coordinator_only: bool) -> list[socket.socket]:
        """The consumer's open sockets to the proxy (kafka-python 3 keeps its coordinator
        on a connection of its own, named ``coordinator-<node>``)."""
        out = []
        for node, conn in list(self.consumer._client._manager._conns.items()):
            if coordinator_only and not str(node).startswith("coordinator-"):
                continue
            sock = getattr(getattr(conn, "transport", None), "_sock", None)
            if sock is not None and sock.fileno() != -1:
                out.append(sock)
        return out

    def cut(self, coordinator_only: bool) -> int:
        """Shuts the sockets down under the client, as a network blip would: the proxy
        sees the client end each connection, the client sees them closed and reconnects."""
        socks = self.sockets(coordinator_only)
        for s in socks:
            s.shutdown(socket.SHUT_RDWR)
        return len(socks)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def test_member_whose_process_lives_is_not_left_for(stack, tmp_path):
    """A kafka-python consumer loses its coordinator connection, later every connection
    at once; its process lives and reconnects. The proxy judges it alive both times (it
    came back with its member id or fetches its partitions again within the grace), sends
    no leave, and the member is never revoked; every record is consumed."""
    partitions = 2
    topic = create_topic(stack.broker, f"ff-blip-{tmp_path.name[-12:]}", partitions)
    group = f"{topic}.g"
    produced = produce(stack.broker, topic, order_items(partitions, 150))
    everything = {r.at for r in produced}
    c = InProcessConsumer(stack.bootstrap, topic, group)

    def alive_verdicts() -> float:
        return skipped(stack.proxy, group, "back") + skipped(stack.proxy, group, "still_fetching")

    def diagnose() -> str:
        return (f"processed {len(c.processed)}/{len(everything)}, rebalances "
                f"{c.rebalances.assigned} revoked={c.rebalances.revoked}, errors {c.errors[-3:]}")

    try:
        wait_for(lambda: c.rebalances.assigned and len(c.processed) >= 10, 60,
                 "the consumer to be assigned and consuming", diagnose)
        assigned_before = len(c.rebalances.assigned)
        assert c.cut(coordinator_only=True) == 1
        wait_for(lambda: alive_verdicts() >= 1, 30, "the proxy to judge the member alive",
                 diagnose)
        assert c.cut(coordinator_only=False) >= 2, "coordinator and fetch connections"
        wait_for(lambda: alive_verdicts() >= 2, 30,
                 "the proxy to judge the member alive again", diagnose)
        wait_for(lambda: c.processed >= everything, 60, "every record to be consumed",
                 diagnose)
        assert leaves_sent(stack.proxy, group) == 0, stack.proxy.metrics_text()
        assert c.rebalances.revoked == 0, diagnose()
        assert len(c.rebalances.assigned) == assigned_before, diagnose()
    finally:
        c.close()


def test_static_member_is_left_alone_by_default(stack, tmp_path):
    """A static member (group.instance.id) SIGKILLed: the proxy notes it and sends no
    leave, since static membership exists to survive restarts without a rebalance."""
    topic = create_topic(stack.broker, f"ff-static-{tmp_path.name[-12:]}", 2)
    group = f"{topic}.g"
    produce(stack.broker, topic, order_items(2, 20))
    app = rdkafka_app(stack, tmp_path, "static", topic, group, instance_id="pod-0",
                      sleep_ms=200)
    try:
        wait_for(lambda: latest_assignment(app) and app.processed(), 60,
                 "the static member to consume", app.summary)
        app.kill_current()
        wait_for(lambda: skipped(stack.proxy, group, "static") >= 1, 30,
                 "the proxy to note the static member's departure", app.summary)
        assert leaves_sent(stack.proxy, group) == 0
        assert metric(stack.proxy, "quarantine_member_leave_failures_total", group=group) == 0
    finally:
        app.stop()


@pytest.mark.parametrize("section, key", [
    ("{grace: 10ms}", "watch.fast_failover.grace"),
    ("{grace: soon}", "watch.fast_failover.grace"),
    ("{enabled: perhaps}", "watch.fast_failover.enabled"),
    ("{static: true}", "watch.fast_failover"),
])
def test_check_config_names_a_bad_fast_failover_key(tmp_path, section, key):
    binary = quarantine_bin()
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run cargo build")
    cfg = tmp_path / "q.yaml"
    cfg.write_text(f"watch:\n  fast_failover: {section}\n")
    out = subprocess.run([str(binary), "check-config", str(cfg)], capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 64, (out.returncode, out.stderr)
    assert key in out.stderr, out.stderr
    cfg.write_text("watch:\n  fast_failover: {enabled: true, grace: 2s, static_members: true}\n")
    ok = subprocess.run([str(binary), "check-config", str(cfg)], capture_output=True,
                        text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert ok.returncode == 0, ok.stderr
