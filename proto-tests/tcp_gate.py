"""A test-only TCP gate that sits in front of the broker (or the proxy) and injects the
network faults the fault tests need, with real bytes on real sockets:

- ``hold(rule)``: requests for which ``rule(Request)`` is true are held (with everything
  after them on the same connection, so responses stay in order) until ``release()``: a
  broker slower than any write timeout, or one that never answers some requests;
- ``cut()`` / ``restore()``: every connection is reset and new ones are refused until
  ``restore()``: to the proxy and its clients this is a broker that died and came back
  with its storage (tansu 0.6.0 as installed has memory storage only);
- ``reset_responses(every, min_bytes)``: every ``every``-th response of at least
  ``min_bytes`` is cut in the middle and the connection reset (a client connection reset
  mid-response).

Requests are parsed only as far as the header and, for Produce, the topic names.
``test_fault_gate.py`` checks the gate with librdkafka and kafka-python before any fault
test relies on it.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

PRODUCE = 0
FETCH = 1


@dataclass(frozen=True)
class Request:
    """What the gate knows about one request."""

    api_key: int
    api_version: int
    client_id: str
    topics: tuple[str, ...]
    """Topic names of a Produce request (empty for other APIs)."""
    frame: bytes = field(default=b"", repr=False, compare=False)
    """The whole request (without its size prefix)."""


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _skip_tags(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


def _produce_topics(body: bytes, pos: int, version: int) -> tuple[str, ...]:
    """Topic names of a Produce request body (v3+; flexible from v9)."""
    flexible = version >= 9
    if flexible:
        n, pos = _uvarint(body, pos)
        pos += max(n - 1, 0)  # compact nullable transactional id
        pos += 2 + 4  # acks, timeout
        count, pos = _uvarint(body, pos)
        count -= 1
        name_len, pos = _uvarint(body, pos)
        name_len -= 1
    else:
        (n,) = struct.unpack_from(">h", body, pos)
        pos += 2 + max(n, 0) + 2 + 4
        (count,) = struct.unpack_from(">i", body, pos)
        pos += 4
        (name_len,) = struct.unpack_from(">h", body, pos)
        pos += 2
    # The first topic is enough for the tests (the proxy writes one topic per request).
    if count < 1:
        return ()
    return (body[pos:pos + name_len].decode("utf-8", "replace"),)


def parse_request(frame: bytes) -> Request | None:
    """The header (and Produce topics) of a request frame without its size prefix."""
    try:
        api_key, version, _corr, client_len = struct.unpack_from(">hhih", frame)
        pos = 10 + max(client_len, 0)
        client_id = frame[10:pos].decode("utf-8", "replace")
        topics: tuple[str, ...] = ()
        if api_key == PRODUCE and version >= 3:
            if version >= 9:
                pos = _skip_tags(frame, pos)
            topics = _produce_topics(frame, pos, version)
        return Request(api_key, version, client_id, topics, frame)
    except (struct.error, IndexError):
        return None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _reset(sock: socket.socket) -> None:
    """Closes with RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Gate:
    """Listens on ``listen`` (host, port) and relays every connection to ``target``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.listen = listen
        self.target = target
        self._lock = threading.Lock()
        self._rule = None
        self._released = threading.Event()
        self._released.set()
        self._down = False
        self._discard = False
        self._reset_every = 0
        self._reset_min = 0
        self._responses = 0
        self._conns: set[socket.socket] = set()
        self.held = 0
        """Requests held so far."""
        self.resets = 0
        """Responses cut in the middle so far."""
        self.refused = 0
        """Connections refused while cut."""
        self.seen: list[Request] = []
        """Every request parsed (for the gate's own checks)."""
        self._server = socket.create_server(listen, reuse_port=False)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.listen[0]}:{self.listen[1]}"

    # --- faults ---------------------------------------------------------------------------

    def hold(self, rule) -> None:
        """Holds requests for which ``rule(Request)`` is true until ``release()``."""
        with self._lock:
            self._rule = rule
            self._discard = False
            self._released.clear()

    def release(self, forward: bool = True) -> None:
        """Stops holding. Held requests are forwarded, or with ``forward=False`` dropped
        with their connections (the request never reached the broker)."""
        with self._lock:
            self._rule = None
            self._discard = not forward
            self._released.set()

    def cut(self) -> None:
        """Resets every connection and refuses new ones until ``restore()``."""
        with self._lock:
            self._down = True
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            _reset(c)

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def reset_responses(self, every: int, min_bytes: int) -> None:
        """Cuts every ``every``-th response of at least ``min_bytes`` in the middle (0: off)."""
        with self._lock:
            self._reset_every = every
            self._reset_min = min_bytes
            self._responses = 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()
        self.cut()

    # --- relaying -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses_loop, args=(upstream, client),
                             daemon=True).start()

    def _drop(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._conns.discard(s)
        for s in socks:
            _reset(s)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        while True:
            prefix = _recv_exact(client, 4)
            if prefix is None:
                return self._drop(client, upstream)
            (size,) = struct.unpack(">i", prefix)
            body = _recv_exact(client, size) if size > 0 else b""
            if body is None:
                return self._drop(client, upstream)
            req = parse_request(body)
            if req is not None:
                self.seen.append(req)
                with self._lock:
                    rule = self._rule
                if rule is not None and rule(req):
                    self.held += 1
                    # Everything after it on this connection waits too: responses stay in order.
                    while not self._released.wait(0.2):
                        if self._stop.is_set():
                            return
                    with self._lock:
                        discard = self._discard
                    if discard:
                        return self._drop(client, upstream)
            try:
                upstream.sendall(prefix + body)
            except OSError:
                return self._drop(client, upstream)

    def _responses_loop(self, upstream: socket.socket, client: socket.socket) -> None:
        while True:
            prefix = _recv_exact(upstream, 4)
            if prefix is None:
                return self._drop(client, upstream)
            (size,) = struct.unpack(">i", prefix)
            body = _recv_exact(upstream, size) if size > 0 else b""
            if body is None:
                return self._drop(client, upstream)
            cut = False
            with self._lock:
                if self._reset_every and size >= self._reset_min:
                    self._responses += 1
                    cut = self._responses % self._reset_every == 0
            try:
                if cut:
                    self.resets += 1
                    client.sendall(prefix + body[: size // 2])
                    return self._drop(client, upstream)
                client.sendall(prefix + body)
            except OSError:
                return self._drop(client, upstream)
