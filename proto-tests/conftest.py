"""Fixtures shared by the protocol tests: a fresh tansu broker and a quarantine proxy in
front of it per test module, unique topic names per test, and the broker/proxy logs
attached to every failure report.

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    """A broker plus proxy for one test module."""
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    s = Stack(workdir=workdir).start()
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        stack = getattr(item, "funcargs", {}).get("stack")
        if stack is not None:
            report.sections.append(("broker and proxy logs", stack.log_tails()))
    return report
