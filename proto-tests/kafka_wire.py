"""Just enough of the Kafka wire format to talk to a proxy over a raw socket: build
requests with header v1, read size-prefixed frames, and decode the few responses the bad
input tests look at (ApiVersions v0, Metadata v1)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

API_VERSIONS = 18
METADATA = 3


def request(api_key: int, version: int, correlation_id: int, body: bytes = b"",
            client_id: str = "proto-tests-raw") -> bytes:
    """A size-prefixed request frame with request header v1 (non-flexible)."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(cid)) + cid
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(correlation_id: int) -> bytes:
    return request(API_VERSIONS, 0, correlation_id)


def metadata_request(correlation_id: int) -> bytes:
    """Metadata v1 for all topics (a null topic array)."""
    return request(METADATA, 1, correlation_id, struct.pack(">i", -1))


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Reads exactly ``n`` bytes; None when the peer closed first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> bytes | None:
    """One response frame body (correlation id first); None on a clean close."""
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 4:
        raise ValueError(f"bad response size {size}")
    return recv_exact(sock, size)


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the peer closes (or resets) the connection within ``timeout``, reading
    and discarding anything it sends before that."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Reader:
    """Sequential reader over a response body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


@dataclass
class Broker:
    node_id: int
    host: str
    port: int


def parse_api_versions_v0(body: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(correlation id, error code, {api key: (min, max)})."""
    r = Reader(body)
    correlation_id = r.take(">i")
    error = r.take(">h")
    apis = {}
    for _ in range(r.take(">i")):
        key, lo, hi = r.take(">hhh")
        apis[key] = (lo, hi)
    return correlation_id, error, apis


def parse_metadata_v1_brokers(body: bytes) -> tuple[int, list[Broker]]:
    """(correlation id, brokers) of a Metadata v1 response."""
    r = Reader(body)
    correlation_id = r.take(">i")
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        host = r.string()
        port = r.take(">i")
        r.string()  # rack
        brokers.append(Broker(node_id, host or "", port))
    return correlation_id, brokers
