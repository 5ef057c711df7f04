"""Fetch responses stream through when nothing in them can change, and are held whole when
something can: both on one consumer's connection, with nothing lost or shown that must be
hidden.

A record quarantined for one group makes that group's fetches from before it "may change"
(held whole, the record cut out); once the same consumer is past it, its fetches stream.
Another group on the same proxy streams from the start and sees every record. Counted by
the proxy's ``quarantine_fetch_responses_{streamed,held}_total``. (Detection on streamed
responses is covered by every poison suite: first deliveries stream, re-deliveries are
held.)
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from conftest import RDKAFKA_FAST, unique_name
from poison_support import admin_call, create_topic, metric_for, produce, stack_fixture

RECORDS = 400
HIDDEN = 150


def items(first: int, count: int) -> list:
    """Records of 1 KiB: a fetch of them is over the 64 KiB a response must have to stream
    (smaller ones are held whole: they cost little and keep every rewrite)."""
    return [(0, str(i).encode(), b"%06d" % i + b"x" * 1018, []) for i in range(first, first + count)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from stack_fixture(tmp_path_factory, "streaming", watch=None)


def consumer(bootstrap: str, group: str) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **RDKAFKA_FAST})
    return c


def read(c: Consumer, count: int, what: str) -> list[int]:
    """The next ``count`` offsets ``c`` receives, and whatever else comes a moment more."""
    got: list[int] = []
    deadline = time.monotonic() + 120
    settle = None
    while settle is None or time.monotonic() < settle:
        assert time.monotonic() < deadline, f"{what}: {len(got)} of {count} records"
        msg = c.poll(0.1)
        if msg is not None and not msg.error():
            got.append(msg.offset())
        if settle is None and len(got) >= count:
            settle = time.monotonic() + 2
    c.commit(asynchronous=False)
    return got


def read_all(bootstrap: str, topic: str, group: str, count: int) -> list[int]:
    c = consumer(bootstrap, group)
    try:
        c.subscribe([topic])
        return read(c, count, group)
    finally:
        c.close()


@pytest.mark.timeout(240)
def test_held_and_streamed_responses_interleave_on_one_connection(stack, request):
    proxy = stack.proxy
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    half = RECORDS // 2
    produce(stack.bootstrap, topic, items(0, half))
    group, other = topic + ".hides", topic + ".sees-all"
    body = {"group": group, "topic": topic, "partition": 0, "offset": HIDDEN,
            "reason": "streaming test"}
    status, answer = admin_call(proxy, "POST", "/quarantine", body)
    assert status in (200, 201), f"POST /quarantine: {status} {answer}"

    streamed0 = metric_for(proxy, "quarantine_fetch_responses_streamed_total")
    held0 = metric_for(proxy, "quarantine_fetch_responses_held_total")
    c = consumer(stack.bootstrap, group)
    try:
        c.subscribe([topic])
        # Fetches from before the hidden record: held whole, the record cut out.
        first = read(c, half - 1, group)
        held = metric_for(proxy, "quarantine_fetch_responses_held_total") - held0
        assert first == [o for o in range(half) if o != HIDDEN]
        assert held >= 1, f"held {held}"
        # Past it: the same consumer's fetches stream, new records included.
        streamed1 = metric_for(proxy, "quarantine_fetch_responses_streamed_total")
        produce(stack.bootstrap, topic, items(half, RECORDS - half))
        second = read(c, RECORDS - half, group)
        assert second == list(range(half, RECORDS))
    finally:
        c.close()
    streamed = metric_for(proxy, "quarantine_fetch_responses_streamed_total") - streamed1
    assert streamed >= 1, f"streamed {streamed} after the hidden record"
    assert metric_for(proxy, "quarantine_fetch_responses_streamed_total") > streamed0

    streamed2 = metric_for(proxy, "quarantine_fetch_responses_streamed_total")
    assert read_all(stack.bootstrap, topic, other, RECORDS) == list(range(RECORDS))
    # Nothing hidden from this group and nothing to judge: its large responses stream.
    assert metric_for(proxy, "quarantine_fetch_responses_streamed_total") > streamed2
