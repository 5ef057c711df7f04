"""The main job, end to end: a real broker (tansu), quarantine in front of it, and
applications that only changed ``bootstrap.servers`` producing and consuming through it.

Run it through scripts/demo.sh, which installs and builds everything first. Each step is a
function taking the running stack, listed in ``STEPS``: first a plain produce/consume round
trip, then the poison-record demo (scripts/demo/run_demo.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proto-tests"))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Stack, StartError  # noqa: E402

HERE = Path(__file__).resolve().parent
TOPIC = "demo.roundtrip"
GROUP = "roundtrip-check"
ORDERS = 1000


def say(text: str = "") -> None:
    print(text, flush=True)


def create_topic(stack: Stack, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=15)


def step_round_trip(stack: Stack) -> None:
    """An order producer and an order consumer, both pointed at quarantine."""
    create_topic(stack, TOPIC, 3)
    say(f"Created topic {TOPIC} (3 partitions) through quarantine.")

    producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 10,
                         "compression.type": "zstd"})
    for i in range(ORDERS):
        order = {"order_id": i, "customer": f"c{i % 37}", "amount_cents": 100 + i}
        producer.produce(TOPIC, key=str(order["customer"]).encode(),
                         value=json.dumps(order).encode(), headers=[("source", b"demo")])
    if producer.flush(30) != 0:
        raise SystemExit("the producer could not deliver every order")
    say(f"Produced {ORDERS} orders (zstd-compressed batches).")

    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": GROUP,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 20, "session.timeout.ms": 6000})
    consumer.subscribe([TOPIC])
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(seen) < ORDERS:
            if time.monotonic() > deadline:
                raise SystemExit(f"the consumer got only {len(seen)} of {ORDERS} orders")
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            seen.add(json.loads(msg.value())["order_id"])
        consumer.commit(asynchronous=False)
        brokers = consumer.list_topics(timeout=10).brokers.values()
    finally:
        consumer.close()
    say(f"Consumer group {GROUP} read all {len(seen)} orders and committed.")
    say("Brokers the application was told about: "
        + ", ".join(f"{b.host}:{b.port} (node {b.id})" for b in brokers)
        + f" -- quarantine's per-node listener; the broker itself is on {stack.tansu.address}.")

    if stack.proxy is not None:
        m = stack.proxy.metric_sum
        say(f"quarantine moved {int(m('quarantine_bytes_total'))} bytes for "
            f"{int(m('quarantine_requests_total'))} requests on "
            f"{int(m('quarantine_connections_total'))} client connections.")


def step_poison_record(stack: Stack) -> None:
    """A consumer that cannot parse one record, and quarantine unblocking it."""
    runner = HERE / "demo" / "run_demo.py"
    result = subprocess.run([sys.executable, str(runner), stack.bootstrap,
                             stack.proxy.admin_url, str(stack.proxy.binary()),
                             stack.tansu.address])
    if result.returncode != 0:
        raise SystemExit(f"the poison-record demo failed ({result.returncode})")


STEPS = [step_round_trip, step_poison_record]


def main() -> int:
    stack = Stack()
    try:
        stack.start()
    except StartError as e:
        say(f"could not start the demo: {e}")
        return 1
    say(f"tansu broker on {stack.tansu.address}; quarantine on {stack.bootstrap} "
        f"(admin {stack.proxy.admin_url if stack.proxy else '-'}).")
    ok = False
    try:
        for step in STEPS:
            say()
            say(f"== {step.__doc__.strip().splitlines()[0]}")
            step(stack)
        ok = True
    finally:
        stack.stop()
        if ok:
            stack.cleanup()
        else:
            say(f"logs kept in {stack.workdir}")
    say()
    say("Demo finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
