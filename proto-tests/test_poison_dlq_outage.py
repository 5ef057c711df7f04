"""When the dead-letter write fails nothing is hidden: the group keeps getting the poison
record, the failure is logged and counted in ``quarantine_dlq_write_failures_total``, and
once the cause is fixed the record is diverted.

The broker refuses the writes: tansu validates records produced to a topic for which its
schema registry holds a schema, and the one registered for ``<topic>.dlq`` accepts nothing
(the poison record is not even JSON). The fix is the operator's: point the DLQ template at a
topic without that schema and restart the proxy.
"""

from __future__ import annotations

import uuid

import pytest

from conftest import BOTH_GROUP_PROTOCOLS
from apps.supervisor import start_app
from poison_support import (Offsets, check_dlq, check_nothing_lost, create_topic, diagnose,
                            end_offsets, is_poison, order_items, produce, quarantined,
                            read_topic, stack_fixture, wait_caught_up, wait_for, watch_yaml)

TOPIC = f"orders-outage-{uuid.uuid4().hex[:8]}"
REFUSE_ALL = {"type": "object", "properties": {
    "value": {"type": "object", "required": ["__no_record_has_this__"]}}}
DETECTION = {"max_deliveries": 2, "isolation_idle_timeout": "5s"}


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    yield from stack_fixture(tmp_path_factory, "poison-dlq-outage", group_protocol=group_protocol,
                             watch=watch_yaml(**DETECTION),
                             schemas={f"{TOPIC}.dlq": REFUSE_ALL})


@pytest.mark.timeout(360)
def test_failed_dead_letter_write_hides_nothing(stack, tmp_path):
    create_topic(stack.bootstrap, TOPIC, 1)
    produced = produce(stack.bootstrap, TOPIC, order_items(1, 50, poison={(0, 20)}))
    poison = [r for r in produced if is_poison(r.value)]
    group = TOPIC + ".g"
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=TOPIC, group=group, mode="crash",
                    close_on_crash=True, commit="each", session_timeout_ms=3000,
                    max_poll_interval_ms=3000)
    diag = diagnose(stack, app)
    proxy = stack.proxy
    try:
        wait_for(lambda: proxy.metric_sum("quarantine_dlq_write_failures_total") >= 2, 150,
                 "two failed dead-letter writes", diag)
        seen = len(app.poison_seen())
        # Nothing hidden: the app keeps meeting the record and cannot commit past it.
        wait_for(lambda: len(app.poison_seen()) >= seen + 2, 60,
                 "the poison record to be delivered again after the failed writes", diag)
        assert quarantined(proxy) == []
        offsets = Offsets(stack.broker, group)
        try:
            assert offsets.committed(TOPIC, 1)[0] == 20
        finally:
            offsets.close()
        assert "dead-letter write failed" in proxy.log_text()
        assert read_topic(stack.broker, f"{TOPIC}.dlq", settle=0.5) == []

        # The fix: a DLQ topic the broker accepts.
        proxy.stop()
        proxy.extra_yaml = watch_yaml(topic_template="{topic}.dead", **DETECTION)
        proxy.start()
        wait_caught_up(stack, group, TOPIC, end_offsets(produced, 1), 150, diag)
    finally:
        app.stop()
    check_dlq(stack, TOPIC, group, poison, dlq=f"{TOPIC}.dead", partitions=1)
    check_nothing_lost(produced, app.processed(), poison)
    assert read_topic(stack.broker, f"{TOPIC}.dlq", settle=0.5) == []
