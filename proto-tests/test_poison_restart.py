"""A quarantine decision survives ``kill -9`` of the proxy: after the restart (same
config) the hidden record does not reappear to its group, and nothing is lost."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from conftest import BOTH_GROUP_PROTOCOLS, rdkafka_group_conf, unique_name
from apps.supervisor import start_app
from poison_support import (Offsets, check_dlq, check_group_protocol, check_nothing_lost,
                            create_topic, diagnose, end_offsets, is_poison, order_items, produce, quarantined,
                            stack_fixture, wait_caught_up, wait_for, watch_yaml)


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    yield from stack_fixture(tmp_path_factory, "poison-restart", group_protocol=group_protocol,
                             watch=watch_yaml(max_deliveries=2, isolation_idle_timeout="5s"))


def read_as_group(bootstrap: str, topic: str, group: str, count: int, group_protocol: str,
                  timeout: float = 60) -> dict[tuple[int, int], bytes]:
    """Subscribes as ``group`` and returns (partition, offset) -> value of ``count``
    records, plus any that come in a short while after."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  **rdkafka_group_conf(group_protocol)})
    c.subscribe([topic])
    got: dict[tuple[int, int], bytes] = {}
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while settle_until is None or time.monotonic() < settle_until:
            assert time.monotonic() < deadline, f"{group} read {len(got)} of {count} records"
            msg = c.poll(0.1)
            if msg is not None and not msg.error():
                got[(msg.partition(), msg.offset())] = msg.value()
            if settle_until is None and len(got) >= count:
                settle_until = time.monotonic() + 2
    finally:
        c.close()
    return got


@pytest.mark.timeout(360)
def test_quarantine_survives_kill_9(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 2)
    produced = produce(stack.bootstrap, topic,
                       order_items(2, 150, poison={(0, 40), (1, 120)}))
    poison = sorted((r for r in produced if is_poison(r.value)), key=lambda r: r.at)
    group = topic + ".g"
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=topic, group=group, mode="crash",
                    close_on_crash=True, commit="each", session_timeout_ms=3000,
                    max_poll_interval_ms=3000)
    diag = diagnose(stack, app)
    try:
        wait_for(lambda: any(q["group"] == group for q in quarantined(stack.proxy)), 150,
                 "a first quarantine", diag)
        # Mid-run: the app keeps crash-looping on the other poison record meanwhile.
        stack.proxy.kill9()
        time.sleep(1)
        stack.proxy.start()
        wait_caught_up(stack, group, topic, end_offsets(produced, 2), 200, diag)
    finally:
        app.stop()
    # Each poison record dead-lettered exactly once: the restarted proxy did not divert
    # the first one again, and nothing else.
    check_dlq(stack, topic, group, poison, partitions=2)
    check_nothing_lost(produced, app.processed(), poison)
    check_group_protocol(stack, group)
    hidden = {(q["topic"], q["partition"], q["offset"]) for q in quarantined(stack.proxy)
              if q["group"] == group}
    assert hidden == {(topic, p.partition, p.offset) for p in poison}

    # Restart once more, rewind the group to the beginning and read everything again as
    # that group: the quarantined records stay hidden, the rest all arrive.
    stack.proxy.kill9()
    stack.proxy.start()
    offsets = Offsets(stack.broker, group)
    try:
        offsets.commit(topic, {0: 0, 1: 0})
    finally:
        offsets.close()
    good = {r.at: r.value for r in produced if not is_poison(r.value)}
    got = read_as_group(stack.bootstrap, topic, group, len(good), stack.group_protocol)
    reappeared = sorted(set(got) & {p.at for p in poison})
    assert not reappeared, f"quarantined records reappeared to {group} after restart: {reappeared}"
    assert got == good
