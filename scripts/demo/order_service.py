"""The demo's order service: an unmodified Kafka consumer with an old schema.

It reads `order.confirmed` and refuses any order with a field it does not know (the
brief's couponId example). Like many real services, it crashes on such a record and is
restarted by its supervisor, so without quarantine it would loop on that record forever.
"""
import json
import sys

from confluent_kafka import Consumer

KNOWN_FIELDS = {"orderId", "customer", "amount", "currency"}


def main() -> int:
    bootstrap, topic, group, processed_log = sys.argv[1:5]
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": 200,
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 50,
    })
    consumer.subscribe([topic])
    with open(processed_log, "a", encoding="utf-8") as log:
        while True:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            order = json.loads(msg.value())
            unknown = set(order) - KNOWN_FIELDS
            if unknown:
                # The old deserializer throws; the process dies; the supervisor restarts it.
                print(f"  order-service: cannot parse order at offset {msg.offset()}: "
                      f"unknown field(s) {sorted(unknown)}; crashing", flush=True)
                return 1
            log.write(f"{msg.partition()} {msg.offset()} {order['orderId']}\n")
            log.flush()
            consumer.store_offsets(msg)


if __name__ == "__main__":
    sys.exit(main())
