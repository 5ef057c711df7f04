"""A broken deploy must not drain a topic into the DLQ (issue 8). Each scenario deploys an
application that fails on *every* record (the code is broken, not the data) through the
proxy with the guard's defaults, then rolls back to a healthy version:

- kafka-python with in-process seek-back retry;
- librdkafka crashing and restarted by its supervisor;
- kafkajs with retriable errors (in-process retries, then consumer restarts).

Each checks: at most 3 records diverted, the guard tripped (metric and admin API), after
the rollback every record processed or in the DLQ (counted), the guard re-armed, and the
records diverted before the trip go back with the one replay command the guard names.

The scenarios are independent (own topic, own group) and mostly wait on group joins, so the
module starts them all at once in threads; each test then waits for its own and checks it.

The module runs once per group protocol: under KIP-848 (``group.protocol=consumer``) only
the librdkafka scenarios run, and the replay and re-arm tests use librdkafka applications
where the classic run uses kafka-python.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from conftest import BOTH_GROUP_PROTOCOLS
from apps.supervisor import JS_CONSUMER, Supervisor, start_app
from harness import quarantine_bin
from poison_support import (Produced, Read, WatchedQuarantine, admin_call, check_group_protocol,
                            create_topic, diagnose, end_offsets, metric_for, order_items,
                            produce, quarantined, read_topic, skip_unless_speaks, speaks,
                            stack_fixture, wait_caught_up, wait_for, watch_yaml)

TOKEN = "qt_guard-tests"
PARTITIONS = 2
PER_PARTITION = 25
MAX_DIVERSIONS = 3  # the guard's default max_consecutive
HARD_CRASH = {"session_timeout_ms": 2000, "max_poll_interval_ms": 2000, "heartbeat_ms": 500}
QUICK = {"session_timeout_ms": 3000, "max_poll_interval_ms": 3000}

# name: (client, spec of the broken deploy, spec of the rolled-back application)
SCENARIOS = {
    "kafka-python-seek": ("kafka-python", {"mode": "seek", **QUICK}, {"mode": "ok", **QUICK}),
    "rdkafka-crash": ("rdkafka", {"mode": "crash", **HARD_CRASH}, {"mode": "ok", **QUICK}),
    "kafkajs-retry": ("kafkajs", {"mode": "retry", "session_timeout_ms": 3000},
                      {"mode": "ok", "session_timeout_ms": 3000}),
}


@dataclass
class Outcome:
    topic: str
    group: str
    produced: list[Produced]
    diverted: list[Read]
    guard_tripped: dict
    tripped_metric: float
    refused_metric: float
    healthy: Supervisor
    broken: Supervisor
    guard_after: dict
    tripped_metric_after: float
    trips_metric_after: float


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


def side_client(stack) -> tuple[str, str]:
    """The application the replay and re-arm tests use, and the scenario whose diversions
    they replay: kafka-python's in the classic run, librdkafka's under KIP-848."""
    if stack.group_protocol == "classic":
        return "kafka-python", "kafka-python-seek"
    return "rdkafka", "rdkafka-crash"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    # Detection settings as in test_poison_modes (faster searches); the guard's defaults.
    yield from stack_fixture(tmp_path_factory, "poison-guard", admin_token=TOKEN,
                             group_protocol=group_protocol,
                             watch=watch_yaml(max_deliveries=2, isolation_idle_timeout="5s"))


def guard_of(stack, group: str) -> dict | None:
    status, body = admin_call(stack.proxy, "GET", "/quarantine/guards", token=TOKEN)
    assert status == 200 and isinstance(body, list), f"GET /quarantine/guards: {status} {body}"
    mine = [g for g in body if g["group"] == group]
    return mine[0] if mine else None


def dlq_of(stack, topic: str, group: str, at_least: int) -> list[Read]:
    """The group's records in the topic's DLQ: at least ``at_least``, and whatever else
    arrives within the settle time."""
    return [r for r in read_topic(stack.broker, f"{topic}.dlq", at_least=at_least, settle=2.0)
            if r.header("__quarantine.group") == group]


def run_scenario(stack, name: str, client: str, broken_spec: dict, healthy_spec: dict,
                 logdir) -> Outcome:
    topic = create_topic(stack.bootstrap, f"orders-guard-{name}-{uuid.uuid4().hex[:8]}",
                         PARTITIONS)
    # Healthy data only: the records fail because the application is broken.
    produced = produce(stack.bootstrap, topic, order_items(PARTITIONS, PER_PARTITION))
    group = topic + ".g"
    broken = start_app(stack, client, logdir, f"{name}-broken", topic=topic, group=group,
                       commit="each", fail_all=True, **broken_spec)
    try:
        wait_for(lambda: metric_for(stack.proxy, "quarantine_guard_tripped", group=group) == 1,
                 240, f"the guard of {group} to trip", diagnose(stack, broken, token=TOKEN))
        guard_tripped = guard_of(stack, group)
        # Paused: the broken application keeps failing, and nothing more is diverted.
        failures = len(broken.poison_seen())
        wait_for(lambda: len(broken.poison_seen()) >= failures + 3, 60,
                 "the broken application to fail again while the guard is tripped",
                 diagnose(stack, broken, token=TOKEN))
    finally:
        broken.stop()
    diverted = dlq_of(stack, topic, group, len(guard_tripped["trip"]["diverted_before"]))
    tripped_metric = metric_for(stack.proxy, "quarantine_guard_tripped", group=group)
    refused_metric = metric_for(stack.proxy, "quarantine_guard_diversions_refused_total",
                                group=group)
    # The rollback: the previous, healthy version of the application.
    healthy = start_app(stack, client, logdir, f"{name}-healthy", topic=topic, group=group,
                        commit="each", **healthy_spec)
    try:
        wait_caught_up(stack, group, topic, end_offsets(produced, PARTITIONS), 120,
                       diagnose(stack, healthy, token=TOKEN))
        wait_for(lambda: not guard_of(stack, group)["tripped"], 30,
                 f"the guard of {group} to re-arm", diagnose(stack, healthy, token=TOKEN))
        guard_after = guard_of(stack, group)
        tripped_after = metric_for(stack.proxy, "quarantine_guard_tripped", group=group)
        trips_after = metric_for(stack.proxy, "quarantine_guard_trips_total", group=group)
    finally:
        healthy.stop()
    return Outcome(topic, group, produced, diverted, guard_tripped, tripped_metric,
                   refused_metric, healthy, broken, guard_after, tripped_after, trips_after)


@dataclass
class FleetOutcome:
    produced: list[Produced]
    diverted: list[Read]
    tripped: list[float]
    processed: set[tuple[int, int]]


def run_fleet(stack, logdir) -> FleetOutcome:
    """Two replicas of a broken librdkafka app, each behind its own sidecar (one sidecar
    per pod), one group; then both rolled back."""
    second = WatchedQuarantine(upstream=stack.broker, extra_yaml=stack.proxy.extra_yaml,
                               admin_token=TOKEN, workdir=logdir / "sidecar-b",
                               extra_env={"QUARANTINE__WATCH__INSTANCE": "guard-sidecar-b"})
    second.workdir.mkdir(parents=True, exist_ok=True)
    second.start()
    sidecars = [stack.proxy, second]
    try:
        topic = create_topic(stack.bootstrap, f"orders-guard-fleet-{uuid.uuid4().hex[:8]}",
                             PARTITIONS)
        produced = produce(stack.bootstrap, topic, order_items(PARTITIONS, PER_PARTITION))
        group = topic + ".g"
        broken = [start_app(stack, "rdkafka", logdir, f"fleet-broken-{i}", bootstrap=s.bootstrap,
                            topic=topic, group=group, commit="each", fail_all=True, mode="crash",
                            client_id=f"orders-rdkafka-{i}", **HARD_CRASH)
                  for i, s in enumerate(sidecars)]
        try:
            wait_for(lambda: all(metric_for(s, "quarantine_guard_tripped", group=group) == 1
                                 for s in sidecars),
                     240, f"the guards of {group} to trip on both sidecars",
                     diagnose(stack, *broken, token=TOKEN))
            tripped = [metric_for(s, "quarantine_guard_tripped", group=group) for s in sidecars]
        finally:
            for app in broken:
                app.stop()
        diverted = dlq_of(stack, topic, group, MAX_DIVERSIONS)
        healthy = [start_app(stack, "rdkafka", logdir, f"fleet-healthy-{i}", bootstrap=s.bootstrap,
                             topic=topic, group=group, commit="each", mode="ok",
                             client_id=f"orders-rdkafka-{i}", **QUICK)
                   for i, s in enumerate(sidecars)]
        try:
            wait_caught_up(stack, group, topic, end_offsets(produced, PARTITIONS), 120,
                           diagnose(stack, *healthy, token=TOKEN))
        finally:
            for app in healthy:
                app.stop()
        processed = set().union(*(app.processed() for app in healthy))
        return FleetOutcome(produced, diverted, tripped, processed)
    finally:
        second.stop()


@pytest.fixture(scope="module")
def outcomes(stack, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("poison-guard-apps")
    runs = {name: s for name, s in SCENARIOS.items() if speaks(s[0], stack.group_protocol)}
    with ThreadPoolExecutor(len(runs) + 1) as pool:
        futures = {name: pool.submit(run_scenario, stack, name, client, broken, healthy, logdir)
                   for name, (client, broken, healthy) in runs.items()}
        futures["fleet"] = pool.submit(run_fleet, stack, logdir)
        yield futures


@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_broken_deploy_is_paused_not_drained(stack, outcomes: dict[str, Future], name):
    client = SCENARIOS[name][0]
    skip_unless_speaks(stack, client)
    if client == "kafkajs" and not (JS_CONSUMER.parent / "node_modules").exists():
        pytest.skip("proto-tests/js/node_modules missing: run scripts/setup.sh")
    out = outcomes[name].result(timeout=400)
    check_group_protocol(stack, out.group)

    # At most the default number of diversions, and the guard says which they were.
    at = sorted((int(r.header("__quarantine.partition")), int(r.header("__quarantine.offset")))
                for r in out.diverted)
    assert 1 <= len(at) <= MAX_DIVERSIONS, f"{len(at)} records diverted: {at}"
    trip = out.guard_tripped["trip"]
    assert out.guard_tripped["tripped"] and trip["signal"] == "consecutive", out.guard_tripped
    assert sorted((d["partition"], d["offset"]) for d in trip["diverted_before"]) == at
    assert out.tripped_metric == 1
    assert out.refused_metric >= 1
    # The refused record was delivered as the broker has it (the app kept failing on it).
    refused = {(r["partition"], r["offset"]) for r in trip["refused"]}
    assert refused and not refused & set(at)
    assert refused <= set(out.broken.poison_seen())

    # After the rollback: every record processed or in the DLQ, nothing processed twice
    # over the DLQ.
    processed = out.healthy.processed()
    all_at = {r.at for r in out.produced}
    assert not processed & set(at), f"diverted records delivered to the group: {processed & set(at)}"
    missing = all_at - processed - set(at)
    assert not missing, f"{len(missing)} records neither processed nor in the DLQ: {sorted(missing)[:10]}"
    assert len(processed) + len(at) == len(out.produced)

    # Re-armed by the group's own progress.
    assert not out.guard_after["tripped"] and out.guard_after["trip"] is None, out.guard_after
    assert out.tripped_metric_after == 0
    assert out.trips_metric_after == 1
    # GET /quarantine is still the list of hidden records.
    hidden = {(q["partition"], q["offset"]) for q in quarantined(stack.proxy, token=TOKEN)
              if q["group"] == out.group}
    assert hidden == set(at)


@pytest.mark.timeout(420)
def test_records_diverted_before_the_trip_replay_with_one_command(stack, outcomes, tmp_path):
    client, scenario = side_client(stack)
    out = outcomes[scenario].result(timeout=400)
    (command,) = out.guard_tripped["replay"]
    argv = shlex.split(command)
    assert argv[:3] == ["quarantine", "dlq", "replay"] and "--dry-run" in argv, command
    argv = [str(quarantine_bin())] + argv[1:]
    argv.remove("--dry-run")
    # --list: one line per record written (the report alone is a summary).
    run = subprocess.run(argv + ["--list", "--bootstrap", stack.broker], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    back = re.findall(r"-> ([^\[]+)\[(\d+)\]@(\d+)", run.stdout)
    assert len(back) == len(out.diverted), run.stdout
    assert all(t == out.topic for t, _, _ in back), run.stdout
    # The healthy application processes the replayed records.
    ends = end_offsets(out.produced, PARTITIONS)
    for _, p, o in back:
        ends[int(p)] = max(ends[int(p)], int(o) + 1)
    app = start_app(stack, client, tmp_path, "replayed", topic=out.topic,
                    group=out.group, commit="each", mode="ok", **QUICK)
    try:
        wait_caught_up(stack, out.group, out.topic, ends, 120, diagnose(stack, app, token=TOKEN))
    finally:
        app.stop()
    assert {(int(p), int(o)) for _, p, o in back} <= app.processed()


def guard_cli(stack, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARANTINE__")}
    if token is not None:
        env["QUARANTINE__ADMIN__TOKEN"] = token
    return subprocess.run([str(quarantine_bin()), "guard", *args, "--admin",
                           stack.proxy.admin_url], capture_output=True, text=True, timeout=30,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.mark.timeout(300)
def test_rearm_by_hand_through_the_cli(stack, outcomes, tmp_path):
    """An operator re-arms a tripped guard with the CLI while the deploy is still broken:
    diverting resumes, and the guard trips again after at most 3 more."""
    client, scenario = side_client(stack)
    out = outcomes[scenario].result(timeout=400)
    # The token guards the routes and the CLI.
    assert admin_call(stack.proxy, "GET", "/quarantine/guards")[0] == 401
    assert admin_call(stack.proxy, "POST", f"/quarantine/guards/{out.group}/rearm")[0] == 401
    run = guard_cli(stack, "status", token=None)
    assert run.returncode == 1 and "401" in run.stderr, (run.returncode, run.stderr)
    # Re-armed by the rollback already: nothing to do.
    run = guard_cli(stack, "rearm", "--group", out.group)
    assert run.returncode == 0 and '"rearmed":false' in run.stdout, run

    topic = create_topic(stack.bootstrap, f"orders-guard-rearm-{uuid.uuid4().hex[:8]}", 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 30))
    group = topic + ".g"
    broken = start_app(stack, client, tmp_path, "rearm-broken", topic=topic, group=group,
                       commit="each", fail_all=True, mode="seek", **QUICK)
    tripped = lambda: metric_for(stack.proxy, "quarantine_guard_tripped", group=group) == 1
    trips = lambda: metric_for(stack.proxy, "quarantine_guard_trips_total", group=group)
    try:
        wait_for(tripped, 120, f"the guard of {group} to trip", diagnose(stack, broken, token=TOKEN))
        first = len(guard_of(stack, group)["trip"]["diverted_before"])
        run = guard_cli(stack, "rearm", "--group", group)
        assert run.returncode == 0 and '"rearmed":true' in run.stdout, run
        wait_for(lambda: trips() == 2, 120, f"the guard of {group} to trip again",
                 diagnose(stack, broken, token=TOKEN))
        status = guard_cli(stack, "status")
        assert status.returncode == 0 and group in status.stdout, status
    finally:
        broken.stop()
    second = guard_of(stack, group)["trip"]["diverted_before"]
    assert 1 <= first <= MAX_DIVERSIONS and 1 <= len(second) <= MAX_DIVERSIONS
    diverted = dlq_of(stack, topic, group, first + len(second))
    assert len(diverted) == first + len(second), [r.offset for r in diverted]
    assert len(produced) - len(diverted) > 0


@pytest.mark.timeout(420)
def test_a_fleet_of_sidecars_shares_one_budget(stack, outcomes):
    """Each sidecar counts the diversions the others wrote to the state topic, so two
    sidecars of a broken group divert about as much as one: at most max_consecutive, plus
    one per other sidecar for decisions made within the second it takes to share them
    (without sharing, each would divert max_consecutive)."""
    out: FleetOutcome = outcomes["fleet"].result(timeout=400)
    at = {(int(r.header("__quarantine.partition")), int(r.header("__quarantine.offset")))
          for r in out.diverted}
    assert MAX_DIVERSIONS <= len(out.diverted) <= MAX_DIVERSIONS + 1, sorted(at)
    assert out.tripped == [1, 1]
    all_at = {r.at for r in out.produced}
    assert not out.processed & at
    missing = all_at - out.processed - at
    assert not missing, f"{len(missing)} records neither processed nor in the DLQ: {sorted(missing)[:10]}"
