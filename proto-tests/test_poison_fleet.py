"""Detection in the shapes production has, with real clients through real proxies:

- several poison records at once in one crash-looping application (librdkafka taking
  batches of 10 and committing after each batch, kafka-python seeking back in process,
  kafkajs crashing), with the default ``max_deliveries``;
- one sidecar per replica: three replicas of one application in one group, each through
  its own quarantine process, all three proxies in front of one broker;
- the same fleet with one sidecar killed -9 in the middle of the search.

Every test counts every record: each one is processed by the application or is one of the
poison records, which are in the DLQ exactly once each, with their origin in the headers.
No healthy record is in the DLQ.

The module runs once per group protocol; under KIP-848 the librdkafka applications join with
``group.protocol=consumer`` and the kafka-python and kafkajs runs are skipped.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from conftest import BOTH_GROUP_PROTOCOLS
from apps.supervisor import JS_CONSUMER, Supervisor, app_command, start_app
from harness import Tansu, _tail, free_port, kip848_gate_for, quarantine_bin
from poison_support import (Produced, WatchedQuarantine, admin_call, check_dlq,
                            check_group_protocol, check_nothing_lost, create_topic, diagnose,
                            end_offsets, is_poison, metric_for, metric_samples,
                            order_items, produce, quarantined, skip_unless_speaks, speaks,
                            stack_fixture, wait_caught_up, wait_for, watch_yaml)

# librdkafka batches of 125 records, lz4, as the producer of the orders topic.
LZ4_BATCHES = {"compression.type": "lz4", "batch.num.messages": 125, "linger.ms": 100}
# kafkajs reads no lz4 without an extra codec (every fetch fails: a broken consumer, not a
# poison record); gzip it can.
GZIP_BATCHES = {**LZ4_BATCHES, "compression.type": "gzip"}
CRASH = {"mode": "crash", "session_timeout_ms": 3000, "heartbeat_ms": 500,
         "max_poll_interval_ms": 10000}


@dataclass
class Run:
    topic: str
    group: str
    produced: list[Produced]
    poison: list[Produced]
    apps: list[Supervisor]
    searches: list[dict] = field(default_factory=list)
    metric_states: list[dict] = field(default_factory=list)

    def processed(self) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for a in self.apps:
            out |= a.processed()
        return out

    def crashes(self) -> int:
        return sum(len(a.exits) for a in self.apps)


class SearchWatcher:
    """Polls ``GET /quarantine/searches`` of some proxies while a run goes on, keeping
    every row seen for one group."""

    def __init__(self, proxies, group: str):
        self.proxies, self.group = proxies, group
        self.rows: list[dict] = []
        self.metric_rows: list[dict] = []  # quarantine_partition_state labels seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            for p in self.proxies:
                try:
                    status, body = admin_call(p, "GET", "/quarantine/searches")
                except OSError:
                    continue
                if status == 200 and isinstance(body, list):
                    self.rows += [r for r in body if r.get("group") == self.group]
                try:
                    samples = metric_samples(p, "quarantine_partition_state")
                except (OSError, AssertionError):
                    continue
                self.metric_rows += [labels for labels, _ in samples
                                     if labels.get("group") == self.group]

    def __enter__(self) -> "SearchWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def three_poison_topic(bootstrap: str, name: str, partitions: int, per_partition: int,
                       poison: set[tuple[int, int]], batches: dict = LZ4_BATCHES
                       ) -> tuple[str, list[Produced], list[Produced]]:
    topic = create_topic(bootstrap, f"orders-{name}-{uuid.uuid4().hex[:8]}", partitions)
    produced = produce(bootstrap, topic, order_items(partitions, per_partition, poison=poison),
                       **batches)
    bad = [r for r in produced if is_poison(r.value)]
    assert len(bad) == len(poison)
    return topic, produced, bad


# --- one application, several poison records ------------------------------------------

SINGLE = {
    # The application: consume(num_messages=10), commit after each batch, dies
    # with os._exit on a bad record; poison in the middle of batches of 3 of 4 partitions.
    "rdkafka-batch-crash": ("rdkafka", {**CRASH, "commit": "batch", "consume_batch": 10}),
    "kafka-python-seek": ("kafka-python", {"mode": "seek", "commit": "each",
                                           "session_timeout_ms": 3000,
                                           "max_poll_interval_ms": 10000}),
    "kafkajs-crash": ("kafkajs", {"mode": "crash", "commit": "each", "session_timeout_ms": 3000}),
}
SINGLE_POISON = {(0, 187), (1, 62), (2, 312)}


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    # No detection settings at all: the defaults (max_deliveries 3) must do.
    yield from stack_fixture(tmp_path_factory, "poison-fleet", watch=watch_yaml(),
                             group_protocol=group_protocol)


def run_single(stack, name: str, client: str, spec: dict, logdir) -> Run:
    per_partition = 400
    batches = GZIP_BATCHES if client == "kafkajs" else LZ4_BATCHES
    topic, produced, poison = three_poison_topic(stack.bootstrap, name, 4, per_partition,
                                                 SINGLE_POISON, batches)
    group = topic + ".g"
    app = start_app(stack, client, logdir, name, topic=topic, group=group, **spec)
    with SearchWatcher([stack.proxy], group) as watcher:
        try:
            wait_caught_up(stack, group, topic, end_offsets(produced, 4), 420,
                           diagnose(stack, app))
        finally:
            app.stop()
    return Run(topic, group, produced, poison, [app], watcher.rows, watcher.metric_rows)


@pytest.fixture(scope="module")
def single_runs(stack, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("poison-fleet-apps")
    runs = {name: s for name, s in SINGLE.items() if speaks(s[0], stack.group_protocol)}
    with ThreadPoolExecutor(len(runs)) as pool:
        yield {name: pool.submit(run_single, stack, name, client, spec, logdir)
               for name, (client, spec) in runs.items()}


@pytest.mark.timeout(480)
@pytest.mark.parametrize("name", list(SINGLE))
def test_several_poison_records_in_one_application_are_all_diverted(stack, single_runs, name):
    client, _ = SINGLE[name]
    skip_unless_speaks(stack, client)
    if client == "kafkajs" and not (JS_CONSUMER.parent / "node_modules").exists():
        pytest.skip("proto-tests/js/node_modules missing: run scripts/setup.sh")
    run: Run = single_runs[name].result(timeout=470)
    check_dlq(stack, run.topic, run.group, run.poison, partitions=4)
    check_nothing_lost(run.produced, run.processed(), run.poison)
    check_group_protocol(stack, run.group)
    entries = {(q["partition"], q["offset"]) for q in quarantined(stack.proxy)
               if q["group"] == run.group}
    assert entries == {p.at for p in run.poison}
    # The app met every poison record, and the proxy held records back only while it
    # searched: visible in the hold counter.
    met = {(p, o) for p, o in run.apps[0].poison_seen()}
    assert met == {p.at for p in run.poison}
    if SINGLE[name][1]["mode"] == "crash":
        # The searches were visible while they ran (a crash-restart takes seconds; an
        # in-process retry may be searched faster than the poll sees).
        searched = {r["partition"] for r in run.searches
                    if r["phase"] in ("isolating", "diverting")}
        assert {p.partition for p in run.poison} <= searched, run.searches[-5:]
        # The same searches showed in /metrics, by topic and partition.
        in_metric = {int(r["partition"]) for r in run.metric_states
                     if r["topic"] == run.topic and r["phase"] in ("isolating", "diverting")}
        assert {p.partition for p in run.poison} <= in_metric, run.metric_states[-5:]
    holds = metric_for(stack.proxy, "quarantine_fetch_holds_total", group=run.group)
    assert holds > 0, "records were held back while searching, and counted"
    # Once everything is committed, no search is left open for the group.
    status, rows = admin_call(stack.proxy, "GET", "/quarantine/searches")
    assert status == 200 and not [r for r in rows if r["group"] == run.group
                                  and r["phase"] in ("isolating", "diverting")], rows
    print(f"{name}: {run.crashes()} exits or crash-restarts, "
          f"{len(run.apps[0].poison_seen())} failures on poison records")


# --- one sidecar per replica ----------------------------------------------------------

class Fleet:
    """One broker and three proxies, as three pods each with its own sidecar."""

    def __init__(self, workdir, size: int = 3, group_protocol: str = "classic"):
        self.workdir = workdir
        self.group_protocol = group_protocol
        self.tansu = Tansu(port=free_port(), workdir=workdir / "tansu")
        self.kip848 = kip848_gate_for(self.tansu, group_protocol)
        self.proxies = [WatchedQuarantine(upstream=self.broker,
                                          extra_yaml=watch_yaml() + f"  instance: pod-{i}\n",
                                          workdir=workdir / f"quarantine-{i}")
                        for i in range(size)]
        for p in self.proxies:
            p.workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tansu").mkdir(parents=True, exist_ok=True)

    def start(self) -> "Fleet":
        try:
            self.tansu.start()
            for p in self.proxies:
                p.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for p in self.proxies:
            p.stop()
        self.tansu.stop()
        if self.kip848 is not None:
            self.kip848.stop()

    @property
    def broker(self) -> str:
        """What clients would reach without the sidecars: the KIP-848 gate when there is
        one, else tansu."""
        return self.kip848.address if self.kip848 is not None else self.tansu.address

    # The poison_support helpers take a stack with .broker and .proxy.
    @property
    def proxy(self) -> WatchedQuarantine:
        return self.proxies[0]

    @property
    def bootstrap(self) -> str:
        return self.proxies[0].bootstrap

    def diagnose(self, apps: list[Supervisor]):
        def text() -> str:
            parts = [a.summary() for a in apps]
            for i, p in enumerate(self.proxies):
                try:
                    parts.append(f"pod-{i} /quarantine: {quarantined(p)}")
                except (OSError, AssertionError) as e:
                    parts.append(f"pod-{i} /quarantine: {e}")
                parts.append(f"pod-{i} log:\n" + _tail(p.log_path, 25))
            return "\n".join(parts)
        return text


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, group_protocol):
    import os
    if os.environ.get("PROTO_TESTS_VIA") == "direct":
        pytest.skip("PROTO_TESTS_VIA=direct: poison detection needs the proxy")
    f = Fleet(tmp_path_factory.mktemp(f"poison-fleet-pods-{group_protocol}"),
              group_protocol=group_protocol).start()
    try:
        yield f
    finally:
        f.stop()


FLEET_POISON = {(0, 150), (2, 40), (4, 260)}


def start_replicas(fleet: Fleet, logdir, name: str, topic: str, group: str) -> list[Supervisor]:
    """Three replicas of the issue's librdkafka application, each through its own sidecar,
    each restarted by its own supervisor after a second."""
    apps = []
    for i, proxy in enumerate(fleet.proxies):
        spec = {**CRASH, "commit": "batch", "consume_batch": 10, "bootstrap": proxy.bootstrap,
                "topic": topic, "group": group, "client_id": f"orders-{i}",
                "group_protocol": fleet.group_protocol}
        apps.append(Supervisor(app_command("rdkafka", spec), logdir / f"{name}-{i}.log",
                               restart_delay=1.0).start())
    return apps


def run_fleet(fleet: Fleet, logdir, name: str, kill_sidecar: bool) -> Run:
    topic, produced, poison = three_poison_topic(fleet.bootstrap, name, 6, 300, FLEET_POISON)
    group = topic + ".g"
    apps = start_replicas(fleet, logdir, name, topic, group)
    watcher = SearchWatcher(fleet.proxies, group).__enter__()
    try:
        if kill_sidecar:
            # Kill pod-1's sidecar once the group has failed a few times (a search is
            # under way), and bring it back as a restarted pod's sidecar would come.
            wait_for(lambda: sum(len(a.poison_seen()) for a in apps) >= 3, 240,
                     "three failures on poison records", fleet.diagnose(apps))
            victim = fleet.proxies[1]
            victim.kill9()
            time.sleep(2)
            victim.start()
        wait_caught_up(fleet, group, topic, end_offsets(produced, 6), 480,
                       fleet.diagnose(apps))
    finally:
        watcher.__exit__()
        for a in apps:
            a.stop()
    return Run(topic, group, produced, poison, apps, watcher.rows)


@pytest.mark.timeout(540)
def test_a_fleet_of_sidecars_behaves_as_one(fleet, tmp_path_factory):
    run = run_fleet(fleet, tmp_path_factory.mktemp("fleet-apps"), "fleet", kill_sidecar=False)
    check_dlq(fleet, run.topic, run.group, run.poison, partitions=6)
    check_nothing_lost(run.produced, run.processed(), run.poison)
    check_group_protocol(fleet, run.group)
    # Every sidecar knows every decision, whichever one made it.
    for p in fleet.proxies:
        entries = {(q["partition"], q["offset"]) for q in quarantined(p) if q["group"] == run.group}
        assert entries == {r.at for r in run.poison}, f"{p.admin_url}: {entries}"
    # The search states travelled: the sidecars took over searches the others wrote to the
    # state topic (each replica met a different poison record, so at least two sidecars
    # read a search they did not start). Each record was diverted by exactly one sidecar.
    adopted = [metric_for(p, "quarantine_searches_adopted_total") for p in fleet.proxies]
    assert sum(1 for a in adopted if a > 0) >= 2, f"searches adopted per sidecar: {adopted}"
    diverted = sum(metric_for(p, "quarantine_records_diverted_total", group=run.group)
                   for p in fleet.proxies)
    assert diverted == len(run.poison)
    # Searches were seen on the sidecars, each naming the sidecar that holds it.
    assert run.searches, "no search was ever visible"
    assert {r["holder"] for r in run.searches} <= {"pod-0", "pod-1", "pod-2"}
    # The command-line view reads the same API.
    out = subprocess.run([str(quarantine_bin()), "searches", "--admin", fleet.proxies[0].admin_url,
                          "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list)
    table = subprocess.run([str(quarantine_bin()), "searches", "--admin",
                            fleet.proxies[0].admin_url], capture_output=True, text=True,
                           timeout=30)
    assert table.returncode == 0 and table.stdout.strip(), table.stderr
    print(f"fleet: {run.crashes()} crash-restarts across 3 replicas")


@pytest.mark.timeout(540)
def test_a_sidecar_killed_mid_search_loses_nothing(fleet, tmp_path_factory):
    run = run_fleet(fleet, tmp_path_factory.mktemp("fleet-kill-apps"), "fleet-kill",
                    kill_sidecar=True)
    check_dlq(fleet, run.topic, run.group, run.poison, partitions=6)
    check_nothing_lost(run.produced, run.processed(), run.poison)
    print(f"fleet with a sidecar killed: {run.crashes()} crash-restarts across 3 replicas")
