"""Quarantine by hand and release through the admin API, guarded by ``admin.token``."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from confluent_kafka import Consumer

from conftest import BOTH_GROUP_PROTOCOLS, rdkafka_group_conf, unique_name
from poison_support import (Offsets, admin_call, check_dead_letter, create_topic, order_items,
                            produce, quarantined, read_topic, stack_fixture)

TOKEN = "s3cret-admin-token"


GROUP_PROTOCOLS = BOTH_GROUP_PROTOCOLS


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_protocol):
    yield from stack_fixture(tmp_path_factory, "poison-admin", watch=None, admin_token=TOKEN,
                             group_protocol=group_protocol)


def read_offsets(stack, topic: str, group: str, count: int) -> list[int]:
    """Offsets group ``group`` receives from the start of partition 0 of ``topic``
    (through the proxy, with the stack's group protocol), waiting for ``count`` and a
    moment more."""
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  **rdkafka_group_conf(stack.group_protocol)})
    c.subscribe([topic])
    got: list[int] = []
    deadline = time.monotonic() + 60
    settle = None
    try:
        while settle is None or time.monotonic() < settle:
            assert time.monotonic() < deadline, f"{group}: {len(got)} of {count} records"
            msg = c.poll(0.1)
            if msg is not None and not msg.error():
                got.append(msg.offset())
            if settle is None and len(got) >= count:
                settle = time.monotonic() + 2
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


@pytest.mark.timeout(180)
def test_manual_quarantine_and_release(stack, request):
    proxy = stack.proxy
    topic = create_topic(stack.bootstrap, unique_name(request), 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 20))
    group, other = topic + ".a", topic + ".b"
    body = {"group": group, "topic": topic, "partition": 0, "offset": 7,
            "reason": "bad order by hand"}
    path = "/quarantine/" + "/".join(urllib.parse.quote(str(x), safe="")
                                     for x in (group, topic, 0, 7))

    for token in (None, "wrong-token"):
        assert admin_call(proxy, "GET", "/quarantine", token=token)[0] == 401
        assert admin_call(proxy, "POST", "/quarantine", body, token=token)[0] == 401
        assert admin_call(proxy, "DELETE", path, token=token)[0] == 401
    assert quarantined(proxy, TOKEN) == []

    status, answer = admin_call(proxy, "POST", "/quarantine", body, token=TOKEN)
    assert status in (200, 201), f"POST /quarantine: {status} {answer}"
    (entry,) = quarantined(proxy, TOKEN)
    assert (entry["group"], entry["topic"], entry["partition"], entry["offset"]) == (
        group, topic, 0, 7)
    (letter,) = read_topic(stack.broker, f"{topic}.dlq", at_least=1)
    check_dead_letter(letter, produced[7], topic, group,
                      reasons={"manual", "bad order by hand"}, min_deliveries=0)

    # Hidden from that group only.
    assert read_offsets(stack, topic, group, 19) == [o for o in range(20) if o != 7]
    assert read_offsets(stack, topic, other, 20) == list(range(20))

    status, answer = admin_call(proxy, "DELETE", path, token=TOKEN)
    assert status == 200, f"DELETE {path}: {status} {answer}"
    assert quarantined(proxy, TOKEN) == []
    offsets = Offsets(stack.broker, group)
    try:
        offsets.commit(topic, {0: 0})
    finally:
        offsets.close()
    assert read_offsets(stack, topic, group, 20) == list(range(20))


@pytest.mark.timeout(180)
def test_manual_quarantine_of_what_does_not_exist_is_the_callers_mistake(stack, request):
    """Unknown topic, partition or offset: 404; a value that can never exist: 400. Nothing
    is written to a dead-letter topic or hidden; the real record after them still works."""
    proxy = stack.proxy
    topic = create_topic(stack.bootstrap, unique_name(request), 2)
    assert len(produce(stack.bootstrap, topic, order_items(1, 5))) == 5
    group = topic + ".g"

    def post(**fields):
        body = {"group": group, "topic": topic, "partition": 0, "offset": 1, **fields}
        return admin_call(proxy, "POST", "/quarantine", body, token=TOKEN)

    cases = [
        ({"topic": topic + "-missing"}, 404, "does not exist"),
        ({"partition": 9}, 404, "no partition 9"),
        ({"offset": 5}, 404, "past the end"),
        ({"offset": 1_000_000}, 404, "offset 1000000"),
        ({"offset": -3}, 400, "offset"),
        ({"partition": -1}, 400, "partition"),
        ({"group": ""}, 400, "group"),
    ]
    for fields, want, words in cases:
        status, answer = post(**fields)
        assert status == want, f"{fields}: {status} {answer}"
        assert words in str(answer), f"{fields}: {answer}"
    bad_path = "/quarantine/" + "/".join(urllib.parse.quote(str(x), safe="")
                                         for x in (group, topic, 0, -1))
    assert admin_call(proxy, "DELETE", bad_path, token=TOKEN)[0] == 400
    assert [q for q in quarantined(proxy, TOKEN) if q["topic"] == topic] == []

    # The one record that exists: 201, exactly one dead letter.
    status, answer = post(offset=4)
    assert status == 201, f"{status} {answer}"
    (letter,) = read_topic(stack.broker, f"{topic}.dlq", at_least=1)
    assert [q["offset"] for q in quarantined(proxy, TOKEN) if q["topic"] == topic] == [4]
