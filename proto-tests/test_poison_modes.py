"""Every way an application fails on a poison record, with librdkafka (confluent-kafka),
kafka-python and kafkajs: crash and restart under a supervisor, in-process seek-back
retry, a deserializer that throws, and a hang until max.poll.interval eviction. Each ends
with the poison record in the DLQ and everything else processed.

The scenarios are independent (own topic, own group) and mostly wait on group joins, so the
module starts them all at once in threads; each test then waits for its own and checks it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from conftest import BOTH_GROUP_PROTOCOLS
from apps.supervisor import JS_CONSUMER, Supervisor, start_app
from poison_support import (REASONS, Produced, check_dlq, check_group_protocol,
                            check_nothing_lost, create_topic, diagnose, end_offsets, is_poison, order_items, produce, quarantined,
                            skip_unless_speaks, speaks, stack_fixture, wait_caught_up,
                            watch_yaml)

MAX_DELIVERIES = 2
HARD_CRASH = {"session_timeout_ms": 2000, "max_poll_interval_ms": 2000, "heartbeat_ms": 500}
QUICK = {"session_timeout_ms": 3000, "max_poll_interval_ms": 3000}

# name: (client, app spec, reasons the DLQ record may carry)
SCENARIOS = {
    "rdkafka-crash-close": ("rdkafka", {"mode": "crash", "close_on_crash": True, **QUICK},
                            REASONS),
    "rdkafka-seek": ("rdkafka", {"mode": "seek", **QUICK}, {"seek-back"}),
    "rdkafka-deserializer": ("rdkafka", {"mode": "deserializer", **HARD_CRASH}, REASONS),
    "kafka-python-crash": ("kafka-python", {"mode": "crash", "session_timeout_ms": 2000,
                                            "max_poll_interval_ms": 2000}, {"crash-loop"}),
    "kafka-python-seek": ("kafka-python", {"mode": "seek", **QUICK}, {"seek-back"}),
    "kafka-python-deserializer": ("kafka-python", {"mode": "deserializer",
                                                   "session_timeout_ms": 2000,
                                                   "max_poll_interval_ms": 2000}, REASONS),
    "kafka-python-hang": ("kafka-python", {"mode": "hang", "hang_s": 7,
                                           "session_timeout_ms": 3000,
                                           "max_poll_interval_ms": 5000}, REASONS),
    "kafkajs-crash": ("kafkajs", {"mode": "crash", "session_timeout_ms": 2000}, {"crash-loop"}),
    "kafkajs-throw": ("kafkajs", {"mode": "throw", "session_timeout_ms": 3000}, REASONS),
    "kafkajs-retry": ("kafkajs", {"mode": "retry", "session_timeout_ms": 3000}, REASONS),
}


@dataclass
class Outcome:
    topic: str
    group: str
    produced: list[Produced]
    poison: list[Produced]
    app: Supervisor


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    yield from stack_fixture(tmp_path_factory, "poison-modes", group_protocol=group_protocol,
                             watch=watch_yaml(max_deliveries=MAX_DELIVERIES,
                                              isolation_idle_timeout="5s"))


def run_scenario(stack, name: str, client: str, spec: dict, logdir) -> Outcome:
    topic = create_topic(stack.bootstrap, f"orders-{name}-{uuid.uuid4().hex[:8]}", 2)
    produced = produce(stack.bootstrap, topic, order_items(2, 40, poison={(1, 20)}))
    poison = [r for r in produced if is_poison(r.value)]
    group = topic + ".g"
    app = start_app(stack, client, logdir, name, topic=topic, group=group, commit="each",
                    **spec)
    try:
        wait_caught_up(stack, group, topic, end_offsets(produced, 2), 240,
                       diagnose(stack, app))
    finally:
        app.stop()
    return Outcome(topic, group, produced, poison, app)


@pytest.fixture(scope="module")
def outcomes(stack, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("poison-modes-apps")
    runs = {name: s for name, s in SCENARIOS.items() if speaks(s[0], stack.group_protocol)}
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(run_scenario, stack, name, client, spec, logdir)
                   for name, (client, spec, _) in runs.items()}
        yield futures


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_failure_mode_is_unblocked(stack, outcomes: dict[str, Future], name):
    client, _, reasons = SCENARIOS[name]
    skip_unless_speaks(stack, client)
    if client == "kafkajs" and not (JS_CONSUMER.parent / "node_modules").exists():
        pytest.skip("proto-tests/js/node_modules missing: run scripts/setup.sh")
    out = outcomes[name].result(timeout=280)
    check_dlq(stack, out.topic, out.group, out.poison, reasons, partitions=2)
    check_nothing_lost(out.produced, out.app.processed(), out.poison)
    check_group_protocol(stack, out.group)
    assert out.app.poison_seen(), "the app never met the poison record"
    (entry,) = [q for q in quarantined(stack.proxy) if q["group"] == out.group]
    assert (entry["topic"], entry["partition"], entry["offset"]) == (
        out.topic, out.poison[0].partition, out.poison[0].offset)
    assert entry["reason"] in reasons
    assert entry["deliveries"] >= MAX_DELIVERIES
