"""Faults on the quarantine state topic, each counted with a crash-looping librdkafka
application:

- the state topic holding garbage (random bytes, JSON of the wrong shape, tombstones, a
  large value, decisions about partitions that do not exist): the proxy starts, skips each
  with a warning, diverts as usual and reloads its own decisions after a restart;
- the state topic unreadable when the proxy restarts (its reads held by the gate): the
  proxy is not ready and answers no watched fetch until it has read its decisions, so a
  record hidden before the restart is not delivered again, and is not dead-lettered twice.
"""

from __future__ import annotations

import json
import random

import pytest
from confluent_kafka import Producer

from apps.supervisor import start_app
from conftest import unique_name
from fault_support import (PROXY_CLIENT_ID, check_counted, dlq_origins, fault_watch_yaml,
                           gated_fixture)
from harness import http_get
from poison_support import (create_topic, diagnose, end_offsets, is_poison, order_items,
                            produce, quarantined, wait_caught_up, wait_for)
from tcp_gate import FETCH

STATE_TOPIC = "__quarantine_state"
JOIN_GROUP = 11


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from gated_fixture(tmp_path_factory, "faults-state",
                             fault_watch_yaml(max_deliveries=2, isolation_idle_timeout="5s"))


def start_crashing_app(stack, tmp_path, topic: str, group: str, name: str = "app"):
    return start_app(stack, "rdkafka", tmp_path, name, topic=topic, group=group, mode="crash",
                     close_on_crash=True, commit="each", session_timeout_ms=3000,
                     max_poll_interval_ms=3000)


def garbage(topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs no proxy wrote."""
    rng = random.Random(11)
    return [
        (b"k1", rng.randbytes(200)),
        (b"k2", b"{}"),
        (b"k3", b'{"action":"quarantine"}'),
        (b"k4", b'{"action":"release","group":1}'),
        (b"k5", b'{"action":"search","instance":"x","key":{"nonsense":true},"search":[]}'),
        (b"k6", b'{"action":"counts"}'),
        (b"k7", b'{"action":"unknown-action","group":"g"}'),
        (b"k8", None),  # a tombstone for a key that never held a decision
        (b"k9", b"[" * 100_000),
        (None, b"\xff\xfe\x00 not utf-8"),
        # A well-formed decision about a partition that does not exist.
        (b"k10", json.dumps({"action": "quarantine", "group": "nobody", "topic": topic,
                             "partition": 99999, "offset": -5, "reason": "crash-loop",
                             "dlq": None, "deliveries": 0, "at_ms": 0,
                             "instance": "elsewhere"}).encode()),
    ]


@pytest.mark.timeout(480)
def test_garbage_in_the_state_topic(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    p = Producer({"bootstrap.servers": stack.broker})
    junk = garbage(topic)
    for key, value in junk:
        p.produce(STATE_TOPIC, key=key, value=value, partition=0)
    assert p.flush(30) == 0
    proxy = stack.proxy
    proxy.kill9()
    proxy.start()
    wait_for(lambda: proxy.log_text().count("unreadable message in the quarantine state topic")
             >= 8, 30, "the garbage to be skipped with warnings")

    produced = produce(stack.bootstrap, topic, order_items(1, 50, poison={(0, 20)}))
    poison = [r for r in produced if is_poison(r.value)]
    group = topic + ".g"
    app = start_crashing_app(stack, tmp_path, topic, group)
    diag = diagnose(stack, app)
    try:
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 240, diag)
    finally:
        app.stop()
    # The decision is read back after a restart, past the garbage.
    proxy.kill9()
    proxy.start()
    assert {(q["partition"], q["offset"]) for q in quarantined(proxy)
            if q["group"] == group} == {poison[0].at}
    letters = dlq_origins(stack.broker, f"{topic}.dlq", at_least=1)
    check_counted("garbage-in-state-topic", stack, topic, group, produced, app.processed(),
                  poison, letters)


@pytest.mark.timeout(480)
def test_state_topic_unreadable_at_restart(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 80, poison={(0, 20), (0, 60)}))
    poison = sorted((r for r in produced if is_poison(r.value)), key=lambda r: r.at)
    group = topic + ".g"
    proxy = stack.proxy
    gate = stack.gate
    app = start_crashing_app(stack, tmp_path, topic, group)
    diag = diagnose(stack, app)
    try:
        wait_for(lambda: any(q["group"] == group for q in quarantined(proxy)), 200,
                 "the first poison record hidden", diag)
        # The proxy restarts and cannot read its state topic.
        gate.hold(lambda r: r.api_key == FETCH and r.client_id == PROXY_CLIENT_ID)
        proxy.kill9()
        joins_before = sum(1 for r in gate.seen if r.api_key == JOIN_GROUP)
        proxy.start(wait_ready=False)
        wait_for(lambda: gate.held >= 1, 60, "the state topic read to be held", diag)
        wait_for(lambda: sum(1 for r in gate.seen if r.api_key == JOIN_GROUP) > joins_before,
                 120, "the application to rejoin through the restarted proxy", diag)
        assert http_get(proxy.admin_url + "/ready")[0] == 503, "ready without its decisions"
        gate.release()
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 240, diag)
    finally:
        gate.release()
        app.stop()
    letters = dlq_origins(stack.broker, f"{topic}.dlq", at_least=2)
    check_counted("state-topic-unreadable-at-restart", stack, topic, group, produced,
                  app.processed(), poison, letters)
