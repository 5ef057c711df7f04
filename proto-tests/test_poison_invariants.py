"""Poison records through the proxy with its default watch settings (no ``watch:`` section
at all): nothing is lost, the exact record is diverted, and only the group that could not
process it has it hidden."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from conftest import BOTH_GROUP_PROTOCOLS, rdkafka_group_conf, unique_name
from apps.supervisor import start_app
from poison_support import (check_dlq, check_nothing_lost, create_topic, diagnose, end_offsets,
                            is_poison, metric_for, order_items, produce, quarantined,
                            stack_fixture, wait_caught_up, wait_for)

# A crash that leaves no LeaveGroup behind costs one session timeout per restart: keep it short.
HARD_CRASH = {"session_timeout_ms": 2000, "max_poll_interval_ms": 2000, "heartbeat_ms": 500}


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    yield from stack_fixture(tmp_path_factory, "poison-defaults", watch=None,
                             group_protocol=group_protocol)


def check_quarantine_list(stack, group: str, topic: str, poison) -> list[dict]:
    entries = [q for q in quarantined(stack.proxy) if q.get("group") == group]
    assert sorted((q["topic"], q["partition"], q["offset"]) for q in entries) == sorted(
        (topic, p.partition, p.offset) for p in poison), f"GET /quarantine: {entries}"
    for q in entries:
        assert q.get("dlq"), f"no DLQ location in {q}"
    return entries


@pytest.mark.timeout(360)
def test_nothing_lost_with_crash_looping_app(stack, request, tmp_path):
    """3 partitions, 3000 orders, 3 poison records in different partitions; the app exits
    hard on a poison record and a supervisor restarts it. Every record ends up committed by
    the app or in the DLQ, and the DLQ holds exactly the 3 poison records."""
    topic = create_topic(stack.bootstrap, unique_name(request), 3)
    produced = produce(stack.bootstrap, topic,
                       order_items(3, 1000, poison={(0, 137), (1, 512), (2, 903)}),
                       **{"linger.ms": 20})
    poison = [r for r in produced if is_poison(r.value)]
    assert len(poison) == 3
    group = topic + ".g"
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=topic, group=group, mode="crash",
                    commit="each", **HARD_CRASH)
    try:
        wait_caught_up(stack, group, topic, end_offsets(produced, 3), 300,
                       diagnose(stack, app))
    finally:
        app.stop()
    check_dlq(stack, topic, group, poison, partitions=3)
    check_nothing_lost(produced, app.processed(), poison)
    assert {p.at for p in poison} <= set(app.poison_seen()), "the app never met some poison record"
    entries = check_quarantine_list(stack, group, topic, poison)
    assert {q["reason"] for q in entries} <= {"crash-loop"}, entries
    assert metric_for(stack.proxy, "quarantine_records_diverted_total", topic=topic,
                      group=group) == 3
    assert stack.proxy.metric_sum("quarantine_dlq_write_failures_total") == 0
    # Caught up: no partition is left gated to one record at a time.
    wait_for(lambda: stack.proxy.metric_sum("quarantine_partitions_isolated") == 0, 30,
             "isolation to end", diagnose(stack, app))


@pytest.mark.timeout(300)
def test_exact_record_from_the_middle_of_one_batch(stack, request, tmp_path):
    """500 records produced as one batch, the 251st is poison. The app auto-commits what it
    processed every 200 ms and exits hard on the poison, so it dies with most of the batch
    uncommitted: the proxy must narrow it down to offset 250, not a neighbour."""
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    # One produce request with one batch: all 500 queued before the linger expires.
    produced = produce(stack.bootstrap, topic, order_items(1, 500, poison={(0, 250)}),
                       **{"linger.ms": 2000, "batch.num.messages": 10000,
                          "batch.size": 4000000})
    poison = [r for r in produced if is_poison(r.value)]
    assert [p.offset for p in poison] == [250]
    group = topic + ".g"
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=topic, group=group, mode="crash",
                    commit="auto", auto_commit_ms=200, **HARD_CRASH)
    try:
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 240,
                       diagnose(stack, app))
    finally:
        app.stop()
    check_dlq(stack, topic, group, poison, partitions=1)
    check_nothing_lost(produced, app.processed(), poison)
    check_quarantine_list(stack, group, topic, poison)


@pytest.mark.timeout(240)
def test_other_groups_still_receive_the_record(stack, request, tmp_path):
    """Group A cannot process offset 25 and has it quarantined; group B, reading the same
    topic through the same proxy afterwards, still receives it."""
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 60, poison={(0, 25)}))
    poison = [r for r in produced if is_poison(r.value)]
    group_a = topic + ".a"
    app = start_app(stack, "rdkafka", tmp_path, "app-a", topic=topic, group=group_a,
                    mode="crash", close_on_crash=True, commit="each",
                    session_timeout_ms=3000, max_poll_interval_ms=3000)
    try:
        wait_caught_up(stack, group_a, topic, end_offsets(produced, 1), 180,
                       diagnose(stack, app))
    finally:
        app.stop()
    check_dlq(stack, topic, group_a, poison)

    group_b = topic + ".b"
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group_b,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  **rdkafka_group_conf(stack.group_protocol)})
    c.subscribe([topic])
    got = {}
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(produced):
            assert time.monotonic() < deadline, f"group B got {len(got)} of {len(produced)}"
            msg = c.poll(0.1)
            if msg is None or msg.error():
                continue
            got[msg.offset()] = msg.value()
    finally:
        c.close()
    assert got[25] == poison[0].value, "group B did not receive the record group A quarantined"
    assert sorted(got) == [r.offset for r in produced]
    assert all(q["group"] == group_a for q in quarantined(stack.proxy) if q["topic"] == topic)
