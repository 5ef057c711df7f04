"""An order-processing consumer on librdkafka (confluent-kafka), run by the poison tests as
a real process. It parses each record's value as JSON; what it does with one it cannot
parse depends on ``mode``:

- ``crash``: exits at once with status 3, no cleanup (the supervisor restarts it); with
  ``close_on_crash`` it closes the consumer first (leaves the group) as an app whose
  top-level handler cleans up would;
- ``seek``: seeks back to the record and tries again, in-process, forever;
- ``deserializer``: parsing is the value deserializer of a DeserializingConsumer, whose
  exception the app does not catch (so it dies with a traceback);
- ``ok``: there is no poison; only slow or flaky records (see below).

With ``fail_all`` the application is a broken deploy: it cannot parse any record, poison
or not, and fails on each one as its ``mode`` says.

Spec (one JSON argument): bootstrap, topic, group, mode, commit (``each``: synchronous
commit after every record; ``auto``: offsets stored after processing, auto-committed every
``auto_commit_ms``; ``batch``: ``consume(num_messages=consume_batch)`` and one synchronous
commit of the batch's positions after the whole batch), sleep_ms (per record), flaky_failures (a record whose value has
``"flaky": true`` fails that many times, each followed by a seek back, then succeeds),
exit_after (commit and exit 0 after that many records), client_id, group_protocol
(``classic``, the default, or ``consumer``: KIP-848, where the coordinator decides session
timeout and heartbeat interval).

It prints one JSON object per line: ``start``, ``assigned``, ``processed`` (before the
record's commit or offset store), ``poison``, ``retry``, ``exit``. SIGTERM closes the
consumer cleanly.
"""

import json
import os
import signal
import sys
import time

from confluent_kafka import (Consumer, DeserializingConsumer, KafkaError, KafkaException,
                             TopicPartition)
from confluent_kafka.error import ValueDeserializationError

spec = json.loads(sys.argv[1])
mode = spec.get("mode", "ok")
stopping = False


def emit(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def on_term(signum, frame) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)

conf = {
    "bootstrap.servers": spec["bootstrap"],
    "group.id": spec["group"],
    "client.id": spec.get("client_id", "orders-rdkafka"),
    "auto.offset.reset": "earliest",
    "enable.auto.commit": spec.get("commit", "each") == "auto",
    "enable.auto.offset.store": False,
    "auto.commit.interval.ms": spec.get("auto_commit_ms", 200),
    "fetch.wait.max.ms": spec.get("fetch_wait_ms", 50),
    "session.timeout.ms": spec.get("session_timeout_ms", 6000),
    "heartbeat.interval.ms": spec.get("heartbeat_ms", 1000),
    "max.poll.interval.ms": spec.get("max_poll_interval_ms", 60000),
    "topic.metadata.refresh.interval.ms": 5000,
}
if spec.get("debug"):
    conf["debug"] = spec["debug"]  # librdkafka debug contexts, to the app's log
if spec.get("instance_id"):
    conf["group.instance.id"] = spec["instance_id"]  # static membership
if spec.get("group_protocol", "classic") == "consumer":
    # KIP-848: the coordinator owns session timeout and heartbeat interval.
    conf["group.protocol"] = "consumer"
    del conf["session.timeout.ms"], conf["heartbeat.interval.ms"]
if mode == "deserializer":
    conf["value.deserializer"] = lambda value, ctx: parse(value)
    consumer = DeserializingConsumer(conf)
else:
    consumer = Consumer(conf)


def on_assign(c, partitions) -> None:
    emit(ev="assigned", partitions=sorted(tp.partition for tp in partitions))


consumer.subscribe([spec["topic"]], on_assign=on_assign)
emit(ev="start", pid=os.getpid())


def parse(value: bytes):
    if spec.get("fail_all"):  # a broken deploy: the code fails, not the data
        raise ValueError("broken deploy")
    return json.loads(value)


flaky_failures: dict[tuple[int, int], int] = {}
done = 0


def process(msg) -> bool:
    """True when the record was processed; False when the app must retry it."""
    if mode != "deserializer":
        try:
            order = parse(msg.value())
        except ValueError:
            emit(ev="poison", p=msg.partition(), o=msg.offset())
            if mode == "crash":
                if spec.get("close_on_crash"):  # a top-level handler that closes the consumer
                    consumer.close()
                os._exit(3)
            time.sleep(spec.get("retry_delay_ms", 100) / 1000)
            consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
            return False
    else:
        order = msg.value()
    if isinstance(order, dict) and order.get("flaky"):
        at = (msg.partition(), msg.offset())
        if flaky_failures.get(at, 0) < spec.get("flaky_failures", 0):
            flaky_failures[at] = flaky_failures.get(at, 0) + 1
            emit(ev="retry", p=at[0], o=at[1], attempt=flaky_failures[at])
            consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
            return False
    if spec.get("sleep_ms"):
        time.sleep(spec["sleep_ms"] / 1000)
    return True


def commit_batch(msgs) -> None:
    ends = {}
    for m in msgs:
        ends[(m.topic(), m.partition())] = m.offset() + 1
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                        asynchronous=False)
    except KafkaException as e:  # e.g. a rebalance took the partition away
        emit(ev="commit_failed", error=str(e))


if spec.get("commit") == "batch":
    # An application that takes records in batches and commits after each batch: a crash
    # in the middle of a batch leaves the records before it processed but not committed.
    while not stopping:
        msgs = consumer.consume(num_messages=spec.get("consume_batch", 10), timeout=0.1)
        batch = []
        for msg in msgs:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    emit(ev="error", message=str(msg.error()))
                continue
            if not process(msg):
                break
            emit(ev="processed", p=msg.partition(), o=msg.offset())
            batch.append(msg)
            done += 1
        if batch:
            commit_batch(batch)
    consumer.close()
    emit(ev="exit", processed=done)
    sys.exit(0)

while not stopping:
    try:
        msg = consumer.poll(0.1)
    except ValueDeserializationError as e:
        m = e.kafka_message
        emit(ev="poison", p=m.partition(), o=m.offset())
        raise
    if msg is None:
        continue
    if msg.error():
        if msg.error().code() != KafkaError._PARTITION_EOF:
            emit(ev="error", message=str(msg.error()))
        continue
    if not process(msg):
        continue
    emit(ev="processed", p=msg.partition(), o=msg.offset())
    if spec.get("commit", "each") == "each":
        try:
            consumer.commit(message=msg, asynchronous=False)
        except KafkaException as e:  # e.g. a rebalance took the partition away
            emit(ev="commit_failed", p=msg.partition(), o=msg.offset(), error=str(e))
    else:
        consumer.store_offsets(message=msg)
    done += 1
    if spec.get("exit_after") and done >= spec["exit_after"]:
        break

consumer.close()
emit(ev="exit", processed=done)
