"""An order-processing consumer on kafka-python (a pure-Python client), run by the poison
tests as a real process. It parses each record's value as JSON; what it does with one it
cannot parse depends on ``mode``:

- ``crash``: exits at once with status 3, no cleanup (the supervisor restarts it); with
  ``close_on_crash`` it closes the consumer first (leaves the group);
- ``seek``: seeks back to the record and tries again, in-process, forever;
- ``deserializer``: parsing is the consumer's ``value_deserializer``; its exception comes
  out of ``poll()`` and the app does not catch it (so it dies with a traceback);
- ``hang``: blocks on the record for ``hang_s`` seconds (longer than
  ``max_poll_interval_ms``, so the client leaves the group), then seeks back to it and
  polls again, which rejoins the group;
- ``ok``: there is no poison; records may be slow (``sleep_ms``).

With ``fail_all`` the application is a broken deploy: it cannot parse any record, poison
or not, and fails on each one as its ``mode`` says.

Spec (one JSON argument): bootstrap, topic, group, mode, commit (``each``: commit after
every record; ``batch``: commit after each poll's records), sleep_ms, hang_s,
max_poll_interval_ms, max_poll_records, exit_after, client_id.

It prints one JSON object per line: ``start``, ``assigned``, ``processed`` (once
processed, before its commit), ``commit_failed``, ``poison``, ``exit``.
SIGTERM closes the consumer cleanly.
"""

import json
import os
import signal
import sys
import time

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

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


def parse(value: bytes):
    if spec.get("fail_all"):  # a broken deploy: the code fails, not the data
        raise ValueError("broken deploy")
    return json.loads(value)


def deserialize(value: bytes):
    return parse(value)


conf = dict(
    bootstrap_servers=spec["bootstrap"],
    group_id=spec["group"],
    client_id=spec.get("client_id", "orders-kafka-python"),
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    fetch_max_wait_ms=spec.get("fetch_wait_ms", 50),
    session_timeout_ms=spec.get("session_timeout_ms", 6000),
    heartbeat_interval_ms=1000,
    max_poll_interval_ms=spec.get("max_poll_interval_ms", 60000),
    max_poll_records=spec.get("max_poll_records", 500),
    request_timeout_ms=30000,
)
if mode == "deserializer":
    conf["value_deserializer"] = deserialize
consumer = KafkaConsumer(**conf)


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        emit(ev="assigned", partitions=sorted(tp.partition for tp in assigned))


consumer.subscribe([spec["topic"]], listener=Listener())
emit(ev="start", pid=os.getpid())
done = 0


def hang(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stopping:
        time.sleep(0.1)


def commit(offsets) -> bool:
    try:
        consumer.commit(offsets)
        return True
    except KafkaError as e:  # e.g. the group rebalanced meanwhile
        emit(ev="commit_failed", error=str(e))
        return False


def handle(tp, records) -> int:
    """Processes one partition's records; returns how many."""
    n = 0
    for rec in records:
        if stopping:
            break
        if mode == "deserializer":
            order = rec.value
        else:
            try:
                order = parse(rec.value)
            except ValueError:
                emit(ev="poison", p=rec.partition, o=rec.offset)
                if mode == "crash":
                    if spec.get("close_on_crash"):  # a top-level handler that cleans up
                        consumer.close(autocommit=False)
                    os._exit(3)
                if mode == "hang":
                    hang(spec.get("hang_s", 12))
                else:
                    time.sleep(spec.get("retry_delay_ms", 100) / 1000)
                try:
                    consumer.seek(tp, rec.offset)
                except (KafkaError, AssertionError, ValueError) as e:  # no longer assigned
                    emit(ev="seek_failed", error=str(e))
                return n  # the rest of this partition's records come again after the seek
        assert order is not None
        if spec.get("sleep_ms"):
            time.sleep(spec["sleep_ms"] / 1000)
        emit(ev="processed", p=rec.partition, o=rec.offset)
        n += 1
        if spec.get("commit", "each") == "each":
            if not commit({tp: OffsetAndMetadata(rec.offset + 1, "", -1)}):
                return n
    return n


while not stopping:
    try:
        batches = consumer.poll(timeout_ms=100)
    except Exception as e:  # the value deserializer threw: the app does not handle it
        emit(ev="poison", error=str(e)[:200])
        raise
    count = 0
    for tp, records in batches.items():
        count += handle(tp, records)
    if count and spec.get("commit", "each") == "batch":
        commit(None)
    done += count
    if spec.get("exit_after") and done >= spec["exit_after"]:
        break

consumer.close()
emit(ev="exit", processed=done)
