"""The README's demo: an order service crash-loops on one order it cannot parse, and
quarantine finds that exact record on the wire, writes it to `order.confirmed.dlq` and
hides it from the service's consumer group, so the service catches up. Nothing is lost.

Usage: run_demo.py PROXY_BOOTSTRAP ADMIN_URL QUARANTINE_BIN BROKER_BOOTSTRAP
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "order.confirmed"
GROUP = "order-service"
ORDERS = 30
BAD = 17  # the order written by the new producer, with couponId


def say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    proxy, admin_url, qbin, broker = sys.argv[1:5]
    here = os.path.dirname(os.path.abspath(__file__))
    say(f"1. Creating {TOPIC} and producing {ORDERS} orders through quarantine; order #{BAD} "
        "comes from a newer producer and carries a new field, couponId.")
    admin = AdminClient({"bootstrap.servers": proxy})
    for f in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        f.result()
    producer = Producer({"bootstrap.servers": proxy, "linger.ms": 20})
    for i in range(ORDERS):
        order = {"orderId": f"o-{i:03d}", "customer": f"c-{i % 7}", "amount": 10 + i, "currency": "EUR"}
        if i == BAD:
            order["couponId"] = "WELCOME10"
        producer.produce(TOPIC, key=order["orderId"], value=json.dumps(order))
    producer.flush(10)

    say("2. Starting the order service (an unmodified confluent-kafka consumer) under a "
        "supervisor that restarts it whenever it crashes.")
    processed = tempfile.NamedTemporaryFile(prefix="processed-", suffix=".log", delete=False).name
    restarts = 0
    deadline = time.time() + 240
    done = False
    while time.time() < deadline and not done:
        app = subprocess.Popen([sys.executable, os.path.join(here, "order_service.py"),
                                proxy, TOPIC, GROUP, processed])
        while app.poll() is None and time.time() < deadline:
            time.sleep(0.5)
            if len(seen(processed)) >= ORDERS - 1 and quarantined(admin_url):
                done = True
                break
        if app.poll() is None:
            app.terminate()
            app.wait(10)
        elif not done:
            restarts += 1
            say(f"  supervisor: order-service exited with code {app.returncode}; restart #{restarts}")
    if not done:
        say("The demo did not finish in time: see the proxy log.")
        return 1

    q = quarantined(admin_url)[0]
    ids = seen(processed)
    say("")
    say(f"3. quarantine saw the group re-fetch the same offset without committing it, isolated the "
        f"partition, and found the exact record: {q['topic']}[{q['partition']}] offset {q['offset']} "
        f"(reason: {q['reason']}, {q['deliveries']} deliveries).")
    say(f"   It wrote the record to {q['dlq'][0]} (acks=all), then hid it from group {q['group']}.")
    say(f"4. The order service caught up without a code change: it processed {len(ids)} of {ORDERS} orders; "
        f"the remaining one is in the dead-letter topic, with its origin and the reason in headers:")
    say("")
    subprocess.run([qbin, "dlq", "inspect", q["dlq"][0], "--bootstrap", broker, "--show-payload"], check=False)
    missing = {f"o-{i:03d}" for i in range(ORDERS)} - ids
    ok = missing == {f"o-{BAD:03d}"}
    say("")
    say("Nothing lost: every order was processed or is in the DLQ." if ok
        else f"Unexpected: orders not processed: {sorted(missing)}")
    return 0 if ok else 1


def seen(path: str) -> set:
    with open(path, encoding="utf-8") as f:
        return {line.split()[2] for line in f if line.strip()}


def quarantined(admin_url: str) -> list:
    try:
        with urllib.request.urlopen(f"{admin_url}/quarantine", timeout=2) as r:
            return json.load(r)
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
