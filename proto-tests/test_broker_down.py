"""The broker goes away under the proxy: clients lose their connections (and only those),
the proxy stays up and counts the errors, and it serves again once the broker is back."""

from __future__ import annotations

import socket
import time

import pytest

import kafka_wire as kw
from harness import Stack, http_get


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """This module stops and restarts its broker, so it has its own stack."""
    s = Stack(workdir=tmp_path_factory.mktemp("broker_down")).start()
    yield s
    s.stop()


def api_versions(port: int, correlation_id: int = 1) -> int | None:
    """Error code of an ApiVersions round trip through the proxy, None when the proxy
    closed the connection instead of answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(kw.api_versions_request(correlation_id))
        try:
            body = kw.read_frame(s)
        except ConnectionResetError:
            return None
    if body is None:
        return None
    cid, error, _ = kw.parse_api_versions_v0(body)
    assert cid == correlation_id
    return error


def test_broker_down_then_back(stack, proxy):
    assert api_versions(proxy.listen_port) == 0
    established = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=10)
    established.sendall(kw.api_versions_request(7))
    assert kw.read_frame(established) is not None

    before = proxy.metric_sum("quarantine_errors_total")
    stack.tansu.stop()
    # The connection whose broker side went away is closed, not left hanging.
    assert kw.closed_by_peer(established, timeout=15)
    established.close()
    # A new client gets no answer while the broker is down, but the proxy lives on.
    assert api_versions(proxy.listen_port) is None
    assert proxy.alive()
    assert http_get(proxy.admin_url + "/live")[0] == 200
    assert proxy.metric_sum("quarantine_errors_total") > before

    stack.tansu.start()
    deadline = time.monotonic() + 30
    while api_versions(proxy.listen_port) != 0:
        assert time.monotonic() < deadline, "the proxy did not serve again after the broker"
        time.sleep(0.2)
    assert proxy.alive()
