"""Healthy consumers never have a record diverted: a slow consumer whose commit stalls
longer than stall_timeout, long polls at the log end, a rebalance with members joining,
leaving and being killed, restarts after clean commits, and in-process seek-backs fewer
than max_deliveries. Each ends with every record processed, no DLQ topic and nothing in
``GET /quarantine``.

The scenarios are independent (own topic, own group) and run at once in threads; each test
waits for its own.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BOTH_GROUP_PROTOCOLS
from apps.supervisor import Supervisor, start_app
from poison_support import (check_group_protocol, check_nothing_lost, create_topic, diagnose,
                            end_offsets, metric_for, order_items, partition_count, produce,
                            quarantined, skip_unless_speaks, speaks, stack_fixture,
                            wait_caught_up, wait_for, watch_yaml)

QUICK = {"session_timeout_ms": 3000, "max_poll_interval_ms": 3000}


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    yield from stack_fixture(tmp_path_factory, "poison-healthy", group_protocol=group_protocol,
                             watch=watch_yaml(max_deliveries=3, stall_timeout="3s",
                                              isolation_idle_timeout="5s"))


def new_topic(stack, name: str, partitions: int) -> str:
    return create_topic(stack.bootstrap, f"healthy-{name}-{uuid.uuid4().hex[:8]}", partitions)


def slow_consumer(stack, logdir):
    """kafka-python, 150 ms per record, commits once per poll of 30 records: the commit
    stands still for ~4.5 s at a time, longer than stall_timeout, while records flow."""
    topic = new_topic(stack, "slow", 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 90))
    app = start_app(stack, "kafka-python", logdir, "slow", topic=topic, group=topic + ".g",
                    mode="ok", commit="batch", sleep_ms=150, max_poll_records=30,
                    max_poll_interval_ms=20000)
    try:
        wait_caught_up(stack, topic + ".g", topic, end_offsets(produced, 1), 120,
                       diagnose(stack, app))
    finally:
        app.stop()
    return topic, produced, [app]


def idle_long_polls(stack, logdir):
    """librdkafka with 500 ms long polls sits at the log end for 8 s (many empty fetches at
    the same offset), then gets more records."""
    topic = new_topic(stack, "idle", 2)
    first = produce(stack.bootstrap, topic, order_items(2, 20))
    app = start_app(stack, "rdkafka", logdir, "idle", topic=topic, group=topic + ".g",
                    mode="ok", commit="each", fetch_wait_ms=500, **QUICK)
    try:
        wait_caught_up(stack, topic + ".g", topic, end_offsets(first, 2), 60, diagnose(stack, app))
        time.sleep(8)
        second = produce(stack.bootstrap, topic, order_items(2, 20))
        wait_caught_up(stack, topic + ".g", topic, end_offsets(first + second, 2), 60,
                       diagnose(stack, app))
    finally:
        app.stop()
    return topic, first + second, [app]


def rebalances(stack, logdir, **app_spec):
    """Three librdkafka members on 4 partitions: b and c join while a works, a leaves
    cleanly, b is killed (no LeaveGroup) and restarted by its supervisor. ``app_spec`` adds
    to the apps' spec (e.g. ``group_protocol``)."""
    topic = new_topic(stack, "rebalance", 4)
    produced = produce(stack.bootstrap, topic, order_items(4, 300), **{"linger.ms": 20})
    group = topic + ".g"
    spec = dict(topic=topic, group=group, mode="ok", commit="each", sleep_ms=10,
                **{**QUICK, **app_spec})
    a = start_app(stack, "rdkafka", logdir, "rebalance-a", client_id="member-a", **spec)
    apps: list[Supervisor] = [a]
    try:
        wait_for(lambda: len(a.processed()) >= 100, 60, "member a to start", diagnose(stack, a))
        b = start_app(stack, "rdkafka", logdir, "rebalance-b", client_id="member-b", **spec)
        apps.append(b)
        wait_for(lambda: len(b.processed()) >= 20, 60, "member b to work", diagnose(stack, a, b))
        c = start_app(stack, "rdkafka", logdir, "rebalance-c", client_id="member-c", **spec)
        apps.append(c)
        wait_for(lambda: len(c.processed()) >= 20, 60, "member c to work", diagnose(stack, *apps))
        a.stop()
        n = len(b.processed())
        wait_for(lambda: len(b.processed()) >= n + 20, 60, "member b after a left",
                 diagnose(stack, *apps))
        b.kill_current()
        wait_caught_up(stack, group, topic, end_offsets(produced, 4), 150, diagnose(stack, *apps))
    finally:
        for app in apps:
            app.stop()
    assert b.runs >= 2, "member b was not restarted"
    return topic, produced, apps


def clean_restarts(stack, logdir, **app_spec):
    """librdkafka commits 40 records, closes and exits; its supervisor starts it again;
    five times over, each time re-fetching from its commit (records it had prefetched)."""
    topic = new_topic(stack, "restarts", 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 200))
    app = start_app(stack, "rdkafka", logdir, "restarts", topic=topic, group=topic + ".g",
                    mode="ok", commit="each", exit_after=40, **{**QUICK, **app_spec})
    try:
        wait_caught_up(stack, topic + ".g", topic, end_offsets(produced, 1), 150,
                       diagnose(stack, app))
    finally:
        app.stop()
    assert app.runs >= 5, f"the app ran {app.runs} times"
    return topic, produced, [app]


def few_seek_backs(stack, logdir):
    """librdkafka fails each of six records twice (seeking back each time) before
    processing it: 3 deliveries, one fewer failure than max_deliveries needs."""
    topic = new_topic(stack, "seek", 2)
    flaky = {(0, 5), (0, 6), (0, 30), (1, 0), (1, 17), (1, 39)}
    produced = produce(stack.bootstrap, topic, order_items(2, 40, flaky=flaky))
    app = start_app(stack, "rdkafka", logdir, "seek", topic=topic, group=topic + ".g",
                    mode="ok", commit="each", flaky_failures=2, **QUICK)
    try:
        wait_caught_up(stack, topic + ".g", topic, end_offsets(produced, 2), 120,
                       diagnose(stack, app))
    finally:
        app.stop()
    assert len(app.of("retry")) == 2 * len(flaky), "the app did not retry each flaky record twice"
    return topic, produced, [app]


SCENARIOS = {"slow-consumer": slow_consumer, "idle-long-polls": idle_long_polls,
             "rebalances": rebalances, "clean-restarts": clean_restarts,
             "few-seek-backs": few_seek_backs}
CLIENT = {"slow-consumer": "kafka-python"}
"""The client of each scenario that is not librdkafka."""


@pytest.fixture(scope="module")
def outcomes(stack, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("poison-healthy-apps")
    runs = {name: fn for name, fn in SCENARIOS.items()
            if speaks(CLIENT.get(name, "rdkafka"), stack.group_protocol)}
    with ThreadPoolExecutor(len(runs)) as pool:
        yield {name: pool.submit(fn, stack, logdir) for name, fn in runs.items()}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_healthy_consumer_is_never_diverted(stack, outcomes, name):
    skip_unless_speaks(stack, CLIENT.get(name, "rdkafka"))
    topic, produced, apps = outcomes[name].result(timeout=220)
    processed = set().union(*(app.processed() for app in apps))
    check_nothing_lost(produced, processed, [])
    assert partition_count(stack.broker, f"{topic}.dlq") is None, "a DLQ topic was created"
    assert [q for q in quarantined(stack.proxy) if q["topic"] == topic] == []
    assert metric_for(stack.proxy, "quarantine_records_diverted_total", topic=topic) == 0
    check_group_protocol(stack, f"{topic}.g")
