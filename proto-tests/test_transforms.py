"""Kafka-Connect-style transforms and checks on the consume path, end to end: a real broker
(tansu), the proxy started with a ``pipelines:`` section, real clients (confluent-kafka,
kafka-python, kafkajs) consuming through it, and a schema registry served by this test.

The dead-letter topics and the raw source topics are read on the broker itself, never
through the proxy. One proxy serves the whole module; each test has its own topics, which
the pipelines below select by name pattern (``<prefix>-<8 hex digits>``, so a pipeline
never applies to a ``.dlq`` topic).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness import free_port, quarantine_bin
from transform_support import (ORDER_SCHEMA, Msg, SchemaRegistry, TransformStack, avro_long,
                               avro_string, check_letter, commit_direct, consume_group,
                               create_topic, jdump, letters_by_origin, metric, partition_count,
                               pipelines_yaml, produce, read_direct, wire)

HERE = Path(__file__).resolve().parent
JS_SCENARIO = HERE / "js" / "scenario.js"

DATA_EXCEPTION = "org.apache.kafka.connect.errors.DataException"
SERIALIZATION_EXCEPTION = "org.apache.kafka.common.errors.SerializationException"
JSON_SCHEMA_CLASS = "quarantine.check.JsonSchema"
JSON_CLASS = "org.apache.kafka.connect.json.JsonConverter"
REGISTRY_CLASS = "quarantine.check.SchemaRegistry"
MASK_CLASS = "org.apache.kafka.connect.transforms.MaskField$Value"

BILLING_GROUP = "transform-tests-billing"
"""The only group the per-group pipeline applies to."""

AVRO_ORDER = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                         "fields": [{"name": "id", "type": "long"},
                                    {"name": "sku", "type": "string"}]})


def pattern(prefix: str) -> str:
    return prefix + r"-[0-9a-f]{8}"


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_group(request) -> str:
    return f"{request.node.name[:60]}-{uuid.uuid4().hex[:6]}"


# --- the pipelines ----------------------------------------------------------------------

CHAIN = {
    # The 3-transform chain, then a header and two filters gated by predicates.
    "transforms": "mask,insert,rename,tag,skipTests,dropTombstones",
    "transforms.mask.type": "org.apache.kafka.connect.transforms.MaskField$Value",
    "transforms.mask.fields": "email",
    "transforms.mask.replacement": "<redacted>",
    "transforms.insert.type": "InsertField$Value",
    "transforms.insert.static.field": "pipeline",
    "transforms.insert.static.value": "orders-v2",
    "transforms.insert.offset.field": "src_offset",
    "transforms.insert.predicate": "isLegacy",
    "transforms.insert.negate": True,
    "transforms.rename.type": "ReplaceField$Value",
    "transforms.rename.renames": "customer:client,amt:amount",
    "transforms.rename.exclude": "internal",
    "transforms.tag.type": "InsertHeader",
    "transforms.tag.header": "x-transformed-by",
    "transforms.tag.value.literal": "quarantine",
    "transforms.skipTests.type": "Filter",
    "transforms.skipTests.predicate": "isTest",
    "transforms.dropTombstones.type": "org.apache.kafka.connect.transforms.Filter",
    "transforms.dropTombstones.predicate": "isTombstone",
    "predicates": "isTest,isTombstone,isLegacy",
    "predicates.isTest.type": "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
    "predicates.isTest.name": "test-only",
    "predicates.isTombstone.type": "RecordIsTombstone",
    "predicates.isLegacy.type": "HasHeaderKey",
    "predicates.isLegacy.name": "legacy",
    "errors.tolerance": "all",
}


def chain_expected(src: Msg) -> dict:
    """What CHAIN makes of an order object: email masked, pipeline and src_offset added
    (unless the record has a ``legacy`` header), customer/amt renamed, internal dropped;
    field order kept."""
    out = {}
    legacy = any(k == "legacy" for k, _ in src.headers)
    doc = src.json()
    if "email" in doc:
        doc["email"] = "<redacted>"
    if not legacy:  # InsertField adds offset fields before the static one, as Connect does
        doc["src_offset"] = src.offset
        doc["pipeline"] = "orders-v2"
    for k, v in doc.items():
        if k == "internal":
            continue
        out[{"customer": "client", "amt": "amount"}.get(k, k)] = v
    return out


def order_check() -> list[dict]:
    """The order.confirmed JSON Schema check (schema file in proto-tests/schemas)."""
    return [{"type": "json_schema", "file": str(ORDER_SCHEMA)}]


def pipelines(registry_url: str, registry_down_url: str) -> list[dict]:
    return [
        {"name": "chain", "topic_pattern": pattern("chain"), "config": CHAIN},
        {"name": "order-confirmed", "topics": ["order.confirmed"],
         "checks": order_check(),
         "config": {"errors.tolerance": "all",
                    "errors.deadletterqueue.context.headers.enable": True}},
        {"name": "lenient", "topic_pattern": pattern("lenient"),
         "checks": order_check(),
         "config": {"transforms": "insert",
                    "transforms.insert.type": "InsertField$Value",
                    "transforms.insert.static.field": "pipeline",
                    "transforms.insert.static.value": "lenient",
                    "errors.tolerance": "none", "errors.log.enable": True}},
        {"name": "json-only", "topic_pattern": pattern("jsononly"),
         "checks": [{"type": "json"}],
         "config": {"errors.tolerance": "all",
                    "errors.deadletterqueue.topic.name": "jsononly-rejects"}},
        {"name": "bare", "topic_pattern": pattern("bare"),
         "checks": [{"type": "json"}],
         "config": {"errors.tolerance": "all",
                    "errors.deadletterqueue.topic.name": "bare-rejects",
                    "errors.deadletterqueue.topic.replication.factor": 1,
                    "errors.deadletterqueue.context.headers.enable": False}},
        {"name": "registry", "topic_pattern": pattern("registry"),
         "checks": [{"type": "schema_registry",
                     "registry": {"url": registry_url, "error_cache_ms": 60000}}],
         "config": {"errors.tolerance": "all"}},
        {"name": "registry-down", "topic_pattern": pattern("regdown"),
         "checks": [{"type": "schema_registry",
                     "registry": {"url": registry_down_url, "timeout_ms": 500}}],
         "config": {"errors.tolerance": "all"}},
        {"name": "registry-failing", "topic_pattern": pattern("regfail"),
         "checks": [{"type": "schema_registry",
                     "registry": {"url": registry_url + "/broken", "timeout_ms": 1000}}],
         "config": {"errors.tolerance": "all"}},
        {"name": "masked", "topic_pattern": pattern("masked"),
         "checks": order_check(),
         "config": {"transforms": "hideCard,stamp",
                    "transforms.hideCard.type": "MaskField$Value",
                    "transforms.hideCard.fields": "card.number",
                    "transforms.hideCard.field.syntax.version": "V2",
                    "transforms.hideCard.replacement": "XXXX",
                    "transforms.stamp.type": "InsertField$Value",
                    "transforms.stamp.static.field": "validated",
                    "transforms.stamp.static.value": "yes",
                    "errors.tolerance": "all"},
         "dlq_mask": {"fields": ["email", "card.number"], "drop_fields": ["ssn"],
                      "drop_headers": ["authorization"]}},
        {"name": "billing-only", "topic_pattern": pattern("pergroup"), "groups": [BILLING_GROUP],
         "config": {"transforms": "mask", "transforms.mask.type": "MaskField$Value",
                    "transforms.mask.fields": "email"}},
    ]


@pytest.fixture(scope="module")
def registry():
    reg = SchemaRegistry({
        1: ("JSON", ORDER_SCHEMA.read_text()),
        2: ("AVRO", AVRO_ORDER),
    }).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def registry_down_url():
    """A registry address nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, registry, registry_down_url):
    """The broker and a proxy configured with every pipeline of this module. (Named
    ``stack`` so conftest attaches the broker and proxy logs to failure reports.)"""
    workdir = tmp_path_factory.mktemp("transforms")
    s = TransformStack(workdir, pipelines_yaml(pipelines(registry.url, registry_down_url)))
    s.start()
    yield s
    s.stop()


def proxy_log(stack) -> str:
    return stack.proxy.log_text()


# --- 1. a chain of transforms, headers, filters ------------------------------------------

def chain_items() -> list[tuple]:
    """Orders on two partitions, plus records the filters drop and two values the chain
    cannot transform."""
    items = []
    for i in range(8):
        doc = {"id": i, "customer": f"c{i}", "email": f"c{i}@example.com", "amt": 10.5 + i,
               "internal": {"trace": i}}
        headers = [("source", b"web")]
        if i == 3:
            headers.append(("legacy", b"1"))
        if i == 5:
            del doc["email"]  # nothing to mask: the others still apply
        items.append((i % 2, f"k{i}".encode(), jdump(doc), headers))
    items.append((0, b"t1", jdump({"id": 100, "email": "t@example.com"}), [("test-only", b"")]))
    items.append((1, b"t2", jdump({"id": 101}), [("test-only", b"yes")]))
    items.append((0, b"k0", None, []))   # tombstones
    items.append((1, b"k1", None, []))
    items.append((0, b"arr", b"[1,2,3]", []))          # JSON, but not an object
    items.append((1, b"txt", b"plain text, not JSON", []))
    return items


def test_chain_transforms_headers_and_filters(stack, request):
    topic = create_topic(stack.bootstrap, topic_name("chain"), 2)
    group = new_group(request)
    sent = produce(stack.bootstrap, topic, chain_items())
    orders, tests_only, tombstones, bad = sent[:8], sent[8:10], sent[10:12], sent[12:]

    got = consume_group(stack.bootstrap, topic, group, expect=len(orders))

    by_at = {m.at: m for m in got}
    assert sorted(by_at) == sorted(m.at for m in orders), (
        f"received {sorted(by_at)}, expected exactly the orders at {sorted(m.at for m in orders)}"
        f" (filtered: {[m.at for m in tests_only + tombstones]}, failing: {[m.at for m in bad]})")
    assert len(got) == len(by_at), "a record arrived twice"
    for src in orders:
        rec = by_at[src.at]
        want = chain_expected(src)
        assert rec.json() == want, f"{src.at}: got {rec.value!r}, expected {want}"
        assert list(rec.json()) == list(want), f"{src.at}: field order {list(rec.json())}"
        assert rec.key == src.key
        assert rec.headers == src.headers + (("x-transformed-by", b"quarantine"),), (
            f"{src.at}: headers {rec.headers}")

    # The raw topic still holds every record untouched: the proxy rewrote responses only.
    raw = {m.at: m for m in read_direct(stack.broker, topic, expect=len(sent))}
    assert all(raw[m.at].value == m.value for m in sent)

    # Values the chain cannot transform went to the default DLQ, stage TRANSFORMATION.
    letters = letters_by_origin(read_direct(stack.broker, f"{topic}.dlq", expect=len(bad)))
    assert sorted(letters) == sorted(m.at for m in bad), f"DLQ holds {sorted(letters)}"
    check_letter(letters[bad[0].at], bad[0], topic, group, "TRANSFORMATION",
                 "Only objects are supported", class_name=MASK_CLASS, exception=DATA_EXCEPTION)
    check_letter(letters[bad[1].at], bad[1], topic, group, "TRANSFORMATION",
                 "not valid JSON", class_name=MASK_CLASS, exception=DATA_EXCEPTION)
    assert "mask (MaskField$Value)" in letters[bad[0].at].header(
        "__connect.errors.exception.message")


# --- 2. JSON Schema check, tolerance all: the order.confirmed scenario -------------------

def order(i: int, coupon: bool, marker: str = "") -> bytes:
    doc = {"orderId": f"o-{i}", "amount": 20 + i, "email": f"buyer{i}{marker}@example.com"}
    if coupon:
        doc["couponId"] = f"SPRING-{i}"
    return jdump(doc)


def test_schema_check_diverts_records_missing_coupon(stack, request):
    topic = "order.confirmed"
    create_topic(stack.bootstrap, topic, 3)
    group = new_group(request)
    marker = uuid.uuid4().hex  # in the bad payloads: must not show up in the proxy log
    items = [(i % 3, f"order-{i}".encode(), order(i, coupon=i % 5 != 2, marker=marker),
              [("schema-version", b"2" if i % 5 == 2 else b"1")]) for i in range(30)]
    sent = produce(stack.bootstrap, topic, items)
    bad = [m for m in sent if b"couponId" not in m.value]
    good = [m for m in sent if b"couponId" in m.value]
    assert len(bad) == 6

    got = consume_group(stack.bootstrap, topic, group, expect=len(good))

    # Neighbours arrive byte-identical, at their own offsets; the bad ones never arrive.
    assert sorted((m.at, m.key, m.value, m.headers) for m in got) == sorted(
        (m.at, m.key, m.value, m.headers) for m in good), "the good records did not arrive unchanged"
    assert not {m.at for m in got} & {m.at for m in bad}

    dlq = f"{topic}.dlq"
    letters = letters_by_origin(read_direct(stack.broker, dlq, expect=len(bad)))
    assert sorted(letters) == sorted(m.at for m in bad), f"{dlq} holds {sorted(letters)}"
    for src in bad:
        check_letter(letters[src.at], src, topic, group, "VALUE_CONVERTER",
                     "required property couponId is missing", class_name=JSON_SCHEMA_CLASS,
                     exception=DATA_EXCEPTION)
    assert partition_count(stack.broker, dlq) == 3
    assert all(letters[m.at].partition == m.partition for m in bad)
    assert len(got) + len(letters) == len(sent)

    log = proxy_log(stack)
    assert "record quarantined" in log and "required property couponId is missing" in log
    assert marker not in log, "a payload reached the proxy log without errors.log.include.messages"

    # The same group reads the topic again from the start: the diverted records stay hidden
    # and are not dead-lettered a second time.
    commit_direct(stack.broker, group, topic, {p: 0 for p in range(3)})
    again = consume_group(stack.bootstrap, topic, group, expect=len(good))
    assert sorted(m.at for m in again) == sorted(m.at for m in good)
    assert len(read_direct(stack.broker, dlq, expect=len(bad))) == len(bad)
    text = stack.proxy.metrics_text()
    assert metric(text, "quarantine_records_diverted_total", topic=topic, group=group) == len(bad)


# --- 3. tolerance none: the proxy stays transparent --------------------------------------

def test_tolerance_none_passes_failures_unchanged_and_counts_them(stack, request):
    topic = create_topic(stack.bootstrap, topic_name("lenient"), 2)
    group = new_group(request)
    before = stack.proxy.metrics_text()
    assert metric(before, "quarantine_check_failures_total", topic=topic) == 0
    items = [(i % 2, None, order(i, coupon=i % 4 != 1), []) for i in range(16)]
    sent = produce(stack.bootstrap, topic, items)
    bad = [m for m in sent if b"couponId" not in m.value]
    good = [m for m in sent if b"couponId" in m.value]

    got = {m.at: m for m in consume_group(stack.bootstrap, topic, group, expect=len(sent))}

    assert sorted(got) == sorted(m.at for m in sent), "every record must reach the consumer"
    for src in bad:
        assert got[src.at].value == src.value, f"{src.at}: a failing record was changed"
    for src in good:
        assert got[src.at].json() == {**src.json(), "pipeline": "lenient"}
    assert partition_count(stack.broker, f"{topic}.dlq") is None, "a DLQ was created"

    after = stack.proxy.metrics_text()
    failures = metric(after, "quarantine_check_failures_total", topic=topic,
                      group=group, reason="VALUE_CONVERTER")
    assert failures >= len(bad), f"check failures counted: {failures}, bad records: {len(bad)}"
    assert metric(after, "quarantine_records_diverted_total", topic=topic) == 0
    logged = [line for line in proxy_log(stack).splitlines()
              if "record passed unchanged" in line and topic in line]
    assert len(logged) >= len(bad), f"{len(logged)} failures logged, expected {len(bad)}"
    assert "required property couponId is missing" in logged[0]


# --- 4. not JSON at all ---------------------------------------------------------------------

def test_json_check_diverts_non_json_and_passes_tombstones(stack, request):
    topic = create_topic(stack.bootstrap, topic_name("jsononly"), 1)
    group = new_group(request)
    items = [(0, b"a", jdump({"ok": 1}), []),
             (0, b"b", b"<order id='2'/>", [("content-type", b"application/xml")]),
             (0, b"c", None, []),                        # tombstone
             (0, b"d", b"\xff\xfe\x00binary", []),
             (0, b"e", b'{"cut": ', []),
             (0, b"f", b"null", []),                     # JSON null
             (0, b"g", jdump([1, "two"]), []),
             (0, None, None, [])]                        # null key and value
    sent = produce(stack.bootstrap, topic, items)
    bad = [sent[1], sent[3], sent[4]]
    passing = [m for m in sent if m not in bad]

    got = consume_group(stack.bootstrap, topic, group, expect=len(passing))

    assert [(m.at, m.key, m.value) for m in got] == [(m.at, m.key, m.value) for m in passing]
    assert [m.value for m in got if m.key in (b"c", None)] == [None, None], "tombstones must pass"

    letters = letters_by_origin(read_direct(stack.broker, "jsononly-rejects", expect=len(bad)))
    assert sorted(letters) == sorted(m.at for m in bad)
    for src in bad:
        check_letter(letters[src.at], src, topic, group, "VALUE_CONVERTER",
                     "the record value is not valid JSON", class_name=JSON_CLASS,
                     exception=DATA_EXCEPTION)
    assert partition_count(stack.broker, f"{topic}.dlq") is None, (
        "errors.deadletterqueue.topic.name was ignored")


def test_context_headers_disabled_keeps_only_the_origin_headers(stack, request):
    """errors.deadletterqueue.context.headers.enable=false: the dead letter carries no
    __connect.errors.* context headers, only the __quarantine.* origin that restore and
    replay read."""
    topic = create_topic(stack.bootstrap, topic_name("bare"), 1)
    group = new_group(request)
    sent = produce(stack.bootstrap, topic, [(0, b"a", jdump({"ok": 1}), [("h", b"1")]),
                                            (0, b"b", b"not json", [("h", b"2")]),
                                            (0, b"c", jdump({"ok": 3}), [])])
    got = consume_group(stack.bootstrap, topic, group, expect=2)
    assert [m.key for m in got] == [b"a", b"c"]

    (letter,) = read_direct(stack.broker, "bare-rejects", expect=1)
    names = [k for k, _ in letter.headers]
    assert not [k for k in names if k.startswith("__connect.errors.")], names
    assert letter.header("__quarantine.topic") == topic
    assert letter.header("__quarantine.offset") == str(sent[1].offset)
    assert letter.header("__quarantine.group") == group
    assert letter.header("__quarantine.reason") == "check"
    assert (letter.key, letter.value, letter.header("h")) == (b"b", b"not json", "2")


# --- 5. schema registry -------------------------------------------------------------------

def avro_order(i: int, sku: str) -> bytes:
    return avro_long(i) + avro_string(sku)


def test_schema_registry_ids_and_payloads(stack, request, registry):
    topic = create_topic(stack.bootstrap, topic_name("registry"), 1)
    group = new_group(request)
    good_json = {"orderId": "o-1", "couponId": "C", "amount": 3}
    items = [
        (0, b"json-ok", wire(1, jdump(good_json)), []),
        (0, b"json-bad", wire(1, jdump({"orderId": "o-2", "amount": 4})), []),
        (0, b"avro-ok", wire(2, avro_order(7, "sku-7")), []),
        (0, b"avro-short", wire(2, avro_long(8) + avro_long(20) + b"sku"), []),
        (0, b"avro-long", wire(2, avro_order(9, "sku-9") + b"\x02\x04"), []),
        (0, b"unknown-id", wire(99, jdump(good_json)), []),
        (0, b"no-magic", jdump(good_json), []),
        (0, b"tombstone", None, []),
        (0, b"json-ok-2", wire(1, jdump({**good_json, "orderId": "o-3"})), []),
        (0, b"avro-ok-2", wire(2, avro_order(-12345678901, "sku-\u00e9")), []),
    ]
    sent = produce(stack.bootstrap, topic, items)
    by_key = {m.key: m for m in sent}
    passing = [by_key[k] for k in (b"json-ok", b"avro-ok", b"tombstone", b"json-ok-2",
                                   b"avro-ok-2")]
    bad = {b"json-bad": (DATA_EXCEPTION, "schema 1: required property couponId is missing"),
           b"avro-short": (DATA_EXCEPTION, "does not decode against Avro schema 2"),
           b"avro-long": (DATA_EXCEPTION, "does not decode against Avro schema 2"),
           b"unknown-id": (SERIALIZATION_EXCEPTION, "schema id 99 of the record value is unknown"),
           b"no-magic": (SERIALIZATION_EXCEPTION, "magic byte")}

    got = consume_group(stack.bootstrap, topic, group, expect=len(passing))

    assert [(m.at, m.value) for m in got] == [(m.at, m.value) for m in passing]
    letters = letters_by_origin(read_direct(stack.broker, f"{topic}.dlq", expect=len(bad)))
    assert sorted(letters) == sorted(by_key[k].at for k in bad)
    for key, (exception, words) in bad.items():
        src = by_key[key]
        check_letter(letters[src.at], src, topic, group, "VALUE_CONVERTER", words,
                     class_name=REGISTRY_CLASS, exception=exception)
    # Schemas are looked up once and cached for good; the unknown id was asked for.
    assert registry.hits_for("/schemas/ids/1") == 1, dict(registry.hits)
    assert registry.hits_for("/schemas/ids/2") == 1, dict(registry.hits)
    assert registry.hits_for("/schemas/ids/99") >= 1, dict(registry.hits)


def test_schema_registry_unreachable_or_failing_lets_records_pass(stack, request, registry,
                                                                  registry_down_url):
    """Documented choice: a registry that cannot answer is not the record's fault, so the
    records pass unverified (they are not dead-lettered, whatever they hold)."""
    items = [(0, b"ok", wire(1, jdump({"orderId": "o", "couponId": "C", "amount": 1})), []),
             (0, b"breaks-schema", wire(1, jdump({"orderId": "o"})), []),
             (0, b"avro", wire(2, avro_order(1, "x")), [])]
    for prefix in ("regdown", "regfail"):
        topic = create_topic(stack.bootstrap, topic_name(prefix), 1)
        group = new_group(request) + "-" + prefix
        sent = produce(stack.bootstrap, topic, items)
        got = consume_group(stack.bootstrap, topic, group, expect=len(sent))
        assert [(m.at, m.value) for m in got] == [(m.at, m.value) for m in sent], prefix
        assert partition_count(stack.broker, f"{topic}.dlq") is None, f"{prefix}: a DLQ appeared"
        unverified = metric(stack.proxy.metrics_text(), "quarantine_records_unverified_total",
                            topic=topic, group=group)
        assert unverified >= len(sent), f"{prefix}: {unverified} records counted as unverified"
    assert registry.hits_for("/broken/schemas/ids/1") >= 1, dict(registry.hits)
    assert registry.hits_for("/broken/schemas/ids/2") >= 1, dict(registry.hits)
    log = proxy_log(stack)
    assert any("schema registry lookup failed" in line and registry_down_url in line
               for line in log.splitlines()), "the unreachable registry was never tried"
    assert any("schema registry lookup failed" in line and "HTTP 500" in line
               for line in log.splitlines())


# --- 6. masking of dead-letter copies -----------------------------------------------------

def test_dlq_copy_is_masked_and_consumer_copy_is_the_pipelines(stack, request):
    topic = create_topic(stack.bootstrap, topic_name("masked"), 2)
    group = new_group(request)
    secret = uuid.uuid4().hex

    def doc(i: int, coupon: bool) -> dict:
        d = {"orderId": f"o-{i}", "amount": i, "email": f"{secret}-{i}@example.com",
             "ssn": f"{secret}-ssn-{i}", "card": {"number": f"4111-{i:04d}", "exp": "12/29"}}
        if coupon:
            d["couponId"] = f"C{i}"
        return d

    auth = [("authorization", f"Bearer {secret}".encode()), ("trace", b"t-1")]
    items = [(i % 2, f"k{i}".encode(), jdump(doc(i, coupon=i % 3 != 0)), auth) for i in range(9)]
    items.append((0, b"garbage", f"not json {secret}".encode(), auth))
    sent = produce(stack.bootstrap, topic, items)
    bad = [m for m in sent if b"couponId" not in m.value]
    good = [m for m in sent if b"couponId" in m.value]

    got = {m.at: m for m in consume_group(stack.bootstrap, topic, group, expect=len(good))}

    assert sorted(got) == sorted(m.at for m in good)
    for src in good:
        want = src.json()
        want["card"]["number"] = "XXXX"   # the pipeline's MaskField, not the DLQ mask
        want["validated"] = "yes"
        assert got[src.at].json() == want, f"{src.at}: {got[src.at].value!r}"
        assert got[src.at].headers == src.headers, "dlq_mask touched the consumer's headers"

    letters = letters_by_origin(read_direct(stack.broker, f"{topic}.dlq", expect=len(bad)))
    assert sorted(letters) == sorted(m.at for m in bad)
    for src in bad:
        letter = letters[src.at]
        check_letter(letter, src, topic, group, "VALUE_CONVERTER",
                     "not valid JSON" if src.key == b"garbage" else "couponId is missing",
                     same_payload=False)
        assert letter.key == src.key
        assert "authorization" not in [k for k, _ in letter.headers]
        assert ("trace", b"t-1") in letter.headers
        if src.key == b"garbage":
            assert letter.value is None, "an unparseable value reached the DLQ unmasked"
            continue
        want = src.json()
        want["email"] = "****"
        want["card"]["number"] = "****"
        del want["ssn"]
        assert letter.json() == want, f"DLQ copy of {src.at}: {letter.value!r}"
    assert secret not in proxy_log(stack)


# --- 7. other clients ---------------------------------------------------------------------

def chain_orders(n: int) -> list[tuple]:
    return [(i % 2, f"k{i}".encode(),
             jdump({"id": i, "customer": f"c{i}", "email": f"c{i}@example.com", "amt": i,
                    "internal": 1}), [("n", str(i).encode())]) for i in range(n)]


def test_kafka_python_consumer_gets_transformed_values(stack, request):
    from kafka import KafkaConsumer

    topic = create_topic(stack.bootstrap, topic_name("chain"), 2)
    sent = produce(stack.bootstrap, topic, chain_orders(10))
    c = KafkaConsumer(topic, bootstrap_servers=stack.bootstrap, group_id=new_group(request),
                      auto_offset_reset="earliest", enable_auto_commit=True,
                      fetch_max_wait_ms=20, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    got = {}
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(sent):
            assert time.monotonic() < deadline, f"kafka-python got {len(got)} of {len(sent)}"
            for batch in c.poll(timeout_ms=200).values():
                for r in batch:
                    got[(r.partition, r.offset)] = r
    finally:
        c.close()
    for src in sent:
        r = got[src.at]
        assert json.loads(r.value) == chain_expected(src)
        assert list(r.headers) == list(src.headers) + [("x-transformed-by", b"quarantine")]


def test_kafkajs_consumer_gets_transformed_values(stack, request):
    if shutil.which("node") is None or not (JS_SCENARIO.parent / "node_modules").exists():
        pytest.skip("node or proto-tests/js/node_modules missing: run scripts/setup.sh")
    topic = create_topic(stack.bootstrap, topic_name("chain"), 2)
    sent = produce(stack.bootstrap, topic, chain_orders(10))
    spec = {"brokers": [stack.bootstrap], "topic": topic, "group": new_group(request),
            "autoCommit": True}
    proc = subprocess.Popen(["node", str(JS_SCENARIO), "consume", json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    events: list[dict] = []
    done = threading.Event()

    def read():
        for line in proc.stdout:
            if line.strip():
                events.append(json.loads(line))
                if sum(e["event"] == "record" for e in events) >= len(sent) or \
                        events[-1]["event"] == "error":
                    done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        done.wait(60)
        time.sleep(0.5)  # a duplicate or an extra record would show up now
    finally:
        if proc.poll() is None:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    records = [e for e in events if e["event"] == "record"]
    assert len(records) == len(sent), (
        f"kafkajs: {len(records)} records of {len(sent)}; events {events[-3:]}; "
        f"stderr {proc.stderr.read()[-2000:]}")
    got = {(e["partition"], e["offset"]): e for e in records}
    for src in sent:
        e = got[src.at]
        assert json.loads(base64.b64decode(e["value"])) == chain_expected(src)
        headers = [(k, base64.b64decode(v)) for k, v in e["headers"]]
        assert ("x-transformed-by", b"quarantine") in headers


# --- per-group pipelines --------------------------------------------------------------------

def test_pipeline_restricted_to_one_group(stack, request):
    topic = create_topic(stack.bootstrap, topic_name("pergroup"), 2)
    sent = produce(stack.bootstrap, topic,
                   [(i % 2, None, jdump({"id": i, "email": f"{i}@example.com"}), [])
                    for i in range(6)])
    billing = consume_group(stack.bootstrap, topic, BILLING_GROUP, expect=len(sent))
    audit = consume_group(stack.bootstrap, topic, new_group(request), expect=len(sent))
    want = {m.at: m for m in sent}
    assert {m.at: m.json()["email"] for m in billing} == {at: "" for at in want}, (
        "the billing group must get masked emails")
    assert {m.at: m.value for m in audit} == {at: m.value for at, m in want.items()}, (
        "another group must get the records untouched")


# --- 8. bad pipeline configs ---------------------------------------------------------------

BAD_CONFIGS = [
    ("unknown transform type",
     {"transforms": "m", "transforms.m.type": "MaskFeld$Value", "transforms.m.fields": "a"},
     None, 'pipelines[0].config."transforms.m.type"', "MaskFeld"),
    ("unknown transform property",
     {"transforms": "m", "transforms.m.type": "MaskField$Value", "transforms.m.fields": "a",
      "transforms.m.colour": "blue"},
     None, 'pipelines[0].config."transforms.m.colour"', "unknown property"),
    ("alias not listed",
     {"transforms": "m", "transforms.m.type": "MaskField$Value", "transforms.m.fields": "a",
      "transforms.x.type": "Filter"},
     None, 'pipelines[0].config."transforms.x.type"', "not listed"),
    ("unknown predicate property",
     {"transforms": "f", "transforms.f.type": "Filter", "transforms.f.predicate": "p",
      "predicates": "p", "predicates.p.type": "HasHeaderKey", "predicates.p.name": "h",
      "predicates.p.pattern": ".*"},
     None, 'pipelines[0].config."predicates.p.pattern"', "unknown property"),
    ("unknown errors key",
     {"errors.tolerance": "all", "errors.deadletterqueue.topic.nam": "x"},
     None, 'pipelines[0].config."errors.deadletterqueue.topic.nam"', "unknown key"),
    ("bad tolerance",
     {"errors.tolerance": "some"},
     None, 'pipelines[0].config."errors.tolerance"', "none or all"),
    ("unknown check type",
     {}, [{"type": "xml_schema"}], "pipelines", "xml_schema"),
    ("unreadable schema file",
     {}, [{"type": "json_schema", "file": "no-such-schema.json"}],
     "pipelines[0].checks[0].file", "no-such-schema.json"),
]


@pytest.mark.parametrize("config,checks,key,words", [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_check_config_rejects_bad_pipelines(tmp_path, config, checks, key, words):
    pipeline = {"topics": ["orders"], "config": config}
    if checks is not None:
        pipeline["checks"] = checks
    path = tmp_path / "quarantine.yaml"
    path.write_text(pipelines_yaml([pipeline]))
    proc = subprocess.run([str(quarantine_bin()), "check-config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 64, f"exit {proc.returncode}: {proc.stdout}{proc.stderr}"
    assert key in proc.stderr and words in proc.stderr, proc.stderr


def test_check_config_accepts_this_modules_pipelines(tmp_path):
    path = tmp_path / "quarantine.yaml"
    path.write_text(pipelines_yaml(pipelines("http://127.0.0.1:1", "http://127.0.0.1:2")))
    proc = subprocess.run([str(quarantine_bin()), "check-config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
