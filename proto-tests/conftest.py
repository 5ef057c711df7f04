"""Fixtures shared by the protocol tests: a fresh tansu broker and a quarantine proxy in
front of it per test module, unique topic names per test, and the broker/proxy logs
attached to every failure report.

A module that sets ``GROUP_PROTOCOLS = ("classic", "consumer")`` and whose fixtures ask for
``group_protocol`` runs once per consumer group protocol: its tests' ids end in
``[classic-...]`` or ``[consumer-...]``, so ``-k consumer`` selects the KIP-848 runs.

Set ``PROTO_TESTS_VIA=direct`` to run the client tests against the broker itself (to tell
a proxy bug from a broker bug); the proxy-only tests are then reported as skipped with that
reason.
"""

from __future__ import annotations

import re
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Stack

# librdkafka settings every test client uses: tansu re-reads an empty partition only at
# halves of fetch.wait.max.ms, and holds JoinGroup for about half of session.timeout.ms.
RDKAFKA_FAST = {
    "fetch.wait.max.ms": 20,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "topic.metadata.refresh.interval.ms": 5000,
}


BOTH_GROUP_PROTOCOLS = ("classic", "consumer")


def rdkafka_group_conf(group_protocol: str = "classic") -> dict:
    """RDKAFKA_FAST for a consumer of ``group_protocol``: under KIP-848 the coordinator owns
    the session timeout and the heartbeat interval, and librdkafka refuses them."""
    if group_protocol == "classic":
        return dict(RDKAFKA_FAST)
    conf = {k: v for k, v in RDKAFKA_FAST.items()
            if k not in ("session.timeout.ms", "heartbeat.interval.ms")}
    return {**conf, "group.protocol": group_protocol}


def pytest_generate_tests(metafunc):
    protocols = getattr(metafunc.module, "GROUP_PROTOCOLS", None)
    if protocols and "group_protocol" in metafunc.fixturenames:
        metafunc.parametrize("group_protocol", protocols, indirect=True, scope="module")


@pytest.fixture(scope="module")
def group_protocol(request) -> str:
    """The consumer group protocol this module's stack and applications use."""
    return getattr(request, "param", "classic")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request, group_protocol):
    """A broker plus proxy for one test module (per group protocol, see above)."""
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    s = Stack(workdir=workdir, group_protocol=group_protocol).start()
    yield s
    s.stop()


@pytest.fixture
def proxy(stack):
    """The proxy of this module's stack; tests that need it skip when run direct."""
    if stack.proxy is None:
        pytest.skip("PROTO_TESTS_VIA=direct: no proxy in front of the broker")
    return stack.proxy


def unique_name(request, suffix: str = "") -> str:
    """A topic or group name unique to the test that asks."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    return f"{base}{suffix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_topic(stack, request):
    """Creates a topic with a unique name through the stack's bootstrap address."""
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})

    def create(partitions: int = 3, suffix: str = "") -> str:
        name = unique_name(request, suffix)
        futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10)
        for f in futures.values():
            f.result(timeout=15)
        return name

    return create


@pytest.fixture
def group_name(request):
    """A consumer group name unique to the test."""
    return unique_name(request, ".g")


@pytest.fixture(autouse=True)
def kafka4_baseline(request):
    """After each test whose stack has the KIP-848 gate (which holds everyone to the Kafka
    4.x protocol baseline): no request, from the clients or the proxy, was of a version
    Kafka 4.x no longer speaks."""
    yield
    for name in ("stack", "fleet"):
        gate = getattr(request.node.funcargs.get(name), "kip848", None)
        if gate is not None and gate.refused:
            pytest.fail(f"requests below the Kafka 4.x baseline: {dict(gate.refused)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        stack = getattr(item, "funcargs", {}).get("stack")
        if stack is not None:
            report.sections.append(("broker and proxy logs", stack.log_tails()))
    return report
