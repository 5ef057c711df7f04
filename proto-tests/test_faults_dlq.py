"""Faults on the dead-letter path, each with a crash-looping librdkafka application and a
count at the end (produced = committed + dead-lettered, nothing hidden that is not in the
DLQ):

- the broker slower than ``write_timeout_ms`` on DLQ writes (held by the gate, released
  later): nothing is hidden while the writes time out; every timed-out write then lands
  late, so the DLQ holds the record several times (at-least-once), never zero times, and
  ``quarantine dlq replay`` writes it back once;
- the DLQ topic deleted mid-run: the next diversion recreates it;
- the proxy killed -9 after the DLQ acknowledged a write and before the decision reached
  the state topic (the state write held by the gate): after the restart the record is
  diverted again (a duplicate in the DLQ, counted) and then hidden.

The broker refusing DLQ writes outright is ``test_poison_dlq_outage.py`` (INVALID_RECORD
from tansu's schema validation); tansu 0.6.0 has no ACLs, so an authorization error
cannot be produced by this broker.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from confluent_kafka.admin import AdminClient

from apps.supervisor import start_app
from conftest import unique_name
from harness import quarantine_bin
from fault_support import (check_counted, dlq_origins, fault_watch_yaml, gated_fixture,
                           proxy_produce_to, proxy_state_decision)
from poison_support import (Offsets, create_topic, diagnose, end_offsets, is_poison,
                            order_items, produce, quarantined, read_topic, wait_caught_up,
                            wait_for)

DETECTION = {"max_deliveries": 2, "isolation_idle_timeout": "5s"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from gated_fixture(tmp_path_factory, "faults-dlq",
                             fault_watch_yaml(write_timeout_ms=2000, **DETECTION))


def start_crashing_app(stack, tmp_path, topic: str, group: str):
    return start_app(stack, "rdkafka", tmp_path, "app", topic=topic, group=group, mode="crash",
                     close_on_crash=True, commit="each", session_timeout_ms=3000,
                     max_poll_interval_ms=3000)


def committed(stack, group: str, topic: str) -> int:
    offsets = Offsets(stack.broker, group)
    try:
        return offsets.committed(topic, 1)[0]
    finally:
        offsets.close()


@pytest.mark.timeout(420)
def test_dlq_writes_slower_than_the_write_timeout(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 50, poison={(0, 20)}))
    poison = [r for r in produced if is_poison(r.value)]
    group = topic + ".g"
    gate = stack.gate
    gate.hold(proxy_produce_to(".dlq"))
    app = start_crashing_app(stack, tmp_path, topic, group)
    diag = diagnose(stack, app)
    proxy = stack.proxy
    try:
        before = proxy.metric_sum("quarantine_dlq_write_failures_total")
        wait_for(lambda: proxy.metric_sum("quarantine_dlq_write_failures_total") >= before + 1,
                 200, "a DLQ write to time out", diag)
        assert gate.held >= 1
        # Timed out: nothing hidden, the group is still before the poison record.
        assert [q for q in quarantined(proxy) if q["topic"] == topic] == []
        assert committed(stack, group, topic) == 20
        seen = len(app.poison_seen())
        wait_for(lambda: len(app.poison_seen()) >= seen + 1, 120,
                 "the poison record delivered again while the DLQ is slow", diag)
        gate.release()
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 200, diag)
    finally:
        gate.release()
        app.stop()
    letters = dlq_origins(stack.broker, f"{topic}.dlq", at_least=1)
    figures = check_counted("dlq-slower-than-write-timeout", stack, topic, group, produced,
                            app.processed(), poison, letters, allow_duplicates=True)
    # The late copies are the same dead letter: a replay writes the record back once.
    out = subprocess.run([str(quarantine_bin()), "dlq", "replay", f"{topic}.dlq",
                          "--bootstrap", stack.broker, "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^would replay 1 record\(s\)", out.stdout, re.M), out.stdout
    assert re.search(rf"\b{figures['duplicates']} duplicate copies", out.stdout), out.stdout


@pytest.mark.timeout(420)
def test_dlq_topic_deleted_mid_run(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 80, poison={(0, 20), (0, 60)}))
    poison = sorted((r for r in produced if is_poison(r.value)), key=lambda r: r.at)
    group = topic + ".g"
    dlq = f"{topic}.dlq"
    app = start_crashing_app(stack, tmp_path, topic, group)
    diag = diagnose(stack, app)
    try:
        wait_for(lambda: any(q["topic"] == topic for q in quarantined(stack.proxy)), 200,
                 "the first poison record diverted", diag)
        before = dlq_origins(stack.broker, dlq, at_least=1)
        assert before == [poison[0].at]
        admin = AdminClient({"bootstrap.servers": stack.broker})
        for f in admin.delete_topics([dlq], operation_timeout=10).values():
            f.result(timeout=15)
        wait_for(lambda: dlq not in admin.list_topics(timeout=10).topics, 30,
                 f"{dlq} to be deleted", diag)
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 240, diag)
    finally:
        app.stop()
    after = dlq_origins(stack.broker, dlq, at_least=1)
    check_counted("dlq-topic-deleted", stack, topic, group, produced, app.processed(), poison,
                  before + after)


@pytest.mark.timeout(480)
def test_kill9_between_dlq_ack_and_state_write(stack, request, tmp_path):
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 50, poison={(0, 20)}))
    poison = [r for r in produced if is_poison(r.value)]
    group = topic + ".g"
    dlq = f"{topic}.dlq"
    gate = stack.gate
    proxy = stack.proxy
    gate.hold(proxy_state_decision)
    app = start_crashing_app(stack, tmp_path, topic, group)
    diag = diagnose(stack, app)
    try:
        # The DLQ acknowledged the write; the decision's write to the state topic is held.
        wait_for(lambda: len(read_topic(stack.broker, dlq, settle=3.0)) >= 1, 200,
                 "the dead letter written", diag)
        wait_for(lambda: gate.held >= 1, 60, "the state write held", diag)
        proxy.kill9()
        gate.release(forward=False)  # the held write dies with the process
        proxy.start()
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 240, diag)
    finally:
        gate.release()
        app.stop()
    letters = dlq_origins(stack.broker, dlq, at_least=1)
    figures = check_counted("kill9-between-dlq-ack-and-state-write", stack, topic, group,
                            produced, app.processed(), poison, letters, allow_duplicates=True)
    # Hidden after the restart, so the decision reached the state topic this time.
    assert {(q["partition"], q["offset"]) for q in quarantined(proxy)
            if q["topic"] == topic} == {poison[0].at}
    assert figures["duplicates"] <= 1
