"""Records written by one client library and read by another, through the proxy: every
codec's batches as one client encodes them must reach the others intact (the proxy passes
them through byte for byte)."""

from __future__ import annotations

import pytest

import test_confluent_kafka as rdk
import test_kafka_python as kp
import test_kafkajs as kjs
from records import CODECS, assert_same_records, make_records


@pytest.mark.parametrize("codec", CODECS)
def test_kafkajs_to_librdkafka(stack, new_topic, group_name, codec):
    topic = new_topic(partitions=2)
    sent = make_records(f"js-{codec}", 100, 2)
    kjs.produce(stack.bootstrap, topic, sent, codec=codec, chunk=25)
    assert_same_records(sent, rdk.read_all(stack.bootstrap, topic, 2, len(sent), group_name))


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_to_kafka_python(stack, new_topic, codec):
    topic = new_topic(partitions=2)
    sent = make_records(f"rdk-{codec}", 100, 2)
    rdk.produce(stack.bootstrap, topic, sent, **{"compression.type": codec})
    assert_same_records(sent, kp.read_all(stack.bootstrap, topic, 2, len(sent)))


def test_kafka_python_to_kafkajs_mixed_codecs(stack, new_topic, group_name):
    """One partition holding batches of every codec, one after another."""
    topic = new_topic(partitions=1)
    sent = []
    for codec in CODECS:
        batch = make_records(f"kp-{codec}", 40, 1)
        kp.produce(stack.bootstrap, topic, batch, codec=None if codec == "none" else codec)
        sent += batch
    assert_same_records(sent, kjs.consume_all(stack, topic, group_name, len(sent)))
