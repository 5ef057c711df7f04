"""A SASL-enforcing gate in front of a broker that cannot hold SASL users (the tansu build
the tests use): real clients authenticate against it with PLAIN, SCRAM-SHA-256 or
SCRAM-SHA-512, and once they have, it relays their bytes to the broker untouched.

Before authentication a connection may only send ApiVersions (forwarded to the broker),
SaslHandshake v1 and SaslAuthenticate v0-v2 (both answered here). Anything else closes the
connection and is counted in ``refused``, as a real SASL listener would. The broker is
started with the gate's port as its advertised address, so every connection a client (or
the proxy) opens to a broker goes through the gate.

Server side of RFC 4616 (PLAIN) and RFC 5802 / RFC 7677 (SCRAM), 4096 iterations, a random
salt per user and mechanism.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
import threading
from collections import Counter
from dataclasses import dataclass

API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36

UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58

SCRAM_ITERATIONS = 4096
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

MAX_FRAME = 100 * 1024 * 1024


class SaslFailure(Exception):
    """Authentication failed; the message goes to the client in the error_message field."""


class Refused(Exception):
    """The connection broke the protocol before authenticating; the gate closes it."""


# --- wire helpers -------------------------------------------------------------------------

def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise Refused("bad unsigned varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip_tags(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _tag, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    if pos > len(data):
        raise Refused("tagged field past the end of the frame")
    return pos


@dataclass
class Header:
    """A request header: v1, plus tagged fields when the request version is flexible."""

    api_key: int
    api_version: int
    correlation_id: int
    body_offset: int


def parse_header(frame: bytes, flexible: bool) -> Header:
    """The request header of ``frame`` (the bytes after the size prefix)."""
    if len(frame) < 10:
        raise Refused(f"request of {len(frame)} bytes is shorter than a header")
    api_key, api_version, correlation_id, client_len = struct.unpack_from(">hhih", frame)
    pos = 10 + max(client_len, 0)
    if pos > len(frame):
        raise Refused("client id past the end of the frame")
    if flexible:
        pos = _skip_tags(frame, pos)
    return Header(api_key, api_version, correlation_id, pos)


def _bytes_field(frame: bytes, pos: int, compact: bool) -> bytes:
    if compact:
        n, pos = _uvarint(frame, pos)
        n -= 1
    else:
        if pos + 4 > len(frame):
            raise Refused("truncated bytes field")
        (n,) = struct.unpack_from(">i", frame, pos)
        pos += 4
    if n < 0 or pos + n > len(frame):
        raise Refused("bad bytes field length")
    return frame[pos:pos + n]


def _string(s: str | None, compact: bool) -> bytes:
    if s is None:
        return b"\x00" if compact else struct.pack(">h", -1)
    raw = s.encode()
    return (_put_uvarint(len(raw) + 1) if compact else struct.pack(">h", len(raw))) + raw


def _bytes(b: bytes, compact: bool) -> bytes:
    return (_put_uvarint(len(b) + 1) if compact else struct.pack(">i", len(b))) + b


def handshake_response(correlation_id: int, error: int) -> bytes:
    """SaslHandshake v0/v1 response (never flexible): error code and our mechanisms."""
    body = struct.pack(">ihi", correlation_id, error, len(MECHANISMS))
    body += b"".join(_string(m, False) for m in MECHANISMS)
    return struct.pack(">i", len(body)) + body


def authenticate_response(correlation_id: int, version: int, error: int, message: str | None,
                          auth_bytes: bytes) -> bytes:
    """SaslAuthenticate v0-v2 response; v2 is flexible (header v1 with tagged fields)."""
    flexible = version >= 2
    out = struct.pack(">i", correlation_id) + (b"\x00" if flexible else b"")
    out += struct.pack(">h", error) + _string(message, flexible) + _bytes(auth_bytes, flexible)
    if version >= 1:
        out += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
    if flexible:
        out += b"\x00"
    return struct.pack(">i", len(out)) + out


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One size-prefixed frame without its prefix; None when the peer closed."""
    try:
        head = await reader.readexactly(4)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > MAX_FRAME:
        raise Refused(f"frame size {size}")
    try:
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


# --- mechanisms -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ScramCredential:
    """What a SCRAM server stores for one user: never the password itself."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def scram_credential(password: str, hash_name: str, salt: bytes | None = None,
                     iterations: int = SCRAM_ITERATIONS) -> ScramCredential:
    """The SCRAM credential (RFC 5802 section 3) of ``password``."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return ScramCredential(salt, iterations, hashlib.new(hash_name, client_key).digest(),
                           server_key)


def _scram_attrs(message: str) -> dict[str, str]:
    attrs = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslFailure(f"malformed SCRAM attribute {part[:20]!r}")
        attrs.setdefault(part[0], part[2:])
    return attrs


def _saslname(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class PlainExchange:
    """RFC 4616: one message ``authzid NUL authcid NUL passwd``."""

    def __init__(self, gate: "SaslGate"):
        self.gate = gate
        self.user: str | None = None
        self.done = False

    def step(self, token: bytes) -> bytes:
        parts = token.split(b"\x00")
        if len(parts) != 3:
            raise SaslFailure("malformed PLAIN message")
        authzid, authcid, passwd = (p.decode("utf-8", "replace") for p in parts)
        self.user = authcid
        if authzid and authzid != authcid:
            raise SaslFailure(f"user {authcid} may not act as {authzid}")
        expected = self.gate.users.get(authcid)
        if expected is None or not hmac.compare_digest(expected.encode(), passwd.encode()):
            raise SaslFailure("Authentication failed: invalid username or password")
        self.done = True
        return b""


class ScramExchange:
    """RFC 5802 server: client-first, server-first, client-final, server-final."""

    def __init__(self, gate: "SaslGate", mechanism: str):
        self.gate = gate
        self.mechanism = mechanism
        self.hash_name = SCRAM_HASHES[mechanism]
        self.user: str | None = None
        self.done = False
        self.state = "first"
        self.client_first_bare = self.server_first = self.nonce = self.gs2 = ""
        self.credential: ScramCredential | None = None

    def step(self, token: bytes) -> bytes:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("SCRAM message is not UTF-8") from None
        if self.state == "first":
            return self._first(text)
        if self.state == "final":
            return self._final(text)
        raise SaslFailure("SCRAM exchange already finished")

    def _first(self, text: str) -> bytes:
        gs2_end = text.find(",", text.find(",") + 1)
        if not text or text[0] not in "ny" or gs2_end < 0:
            raise SaslFailure("malformed SCRAM client-first message (channel binding?)")
        self.gs2 = text[:gs2_end + 1]
        self.client_first_bare = text[gs2_end + 1:]
        attrs = _scram_attrs(self.client_first_bare)
        if "n" not in attrs or "r" not in attrs:
            raise SaslFailure("SCRAM client-first message without user or nonce")
        self.user = _saslname(attrs["n"])
        self.credential = self.gate.credential(self.user, self.mechanism)
        if self.credential is None:
            raise SaslFailure(f"Authentication failed: unknown user {self.user}")
        self.nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
        salt = base64.b64encode(self.credential.salt).decode()
        self.server_first = f"r={self.nonce},s={salt},i={self.credential.iterations}"
        self.state = "final"
        return self.server_first.encode()

    def _final(self, text: str) -> bytes:
        self.state = "finished"
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise SaslFailure("SCRAM client-final message without proof")
        attrs = _scram_attrs(without_proof)
        if attrs.get("r") != self.nonce:
            raise SaslFailure("SCRAM nonce mismatch")
        if attrs.get("c") != base64.b64encode(self.gs2.encode()).decode():
            raise SaslFailure("SCRAM channel binding mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise SaslFailure("SCRAM proof is not base64") from None
        cred = self.credential
        assert cred is not None  # set by _first, which always runs first
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.new(cred.stored_key, auth_message, self.hash_name).digest()
        if len(proof) != len(signature):
            raise SaslFailure("SCRAM proof of the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(),
                                   cred.stored_key):
            raise SaslFailure(f"Authentication failed during authentication due to invalid "
                              f"credentials with SASL mechanism {self.mechanism}")
        server_sig = hmac.new(cred.server_key, auth_message, self.hash_name).digest()
        self.done = True
        return b"v=" + base64.b64encode(server_sig)


# --- the gate ---------------------------------------------------------------------------------

class SaslGate:
    """A TCP relay to ``upstream_host:upstream_port`` that lets a connection through only
    after it authenticated as one of ``users`` (name -> password).

    Counters (read them any time; they are updated under a lock):
    ``authentications[(user, mechanism)]``, ``failures[(user, mechanism)]`` (user None when
    the message named none), ``refused`` (connections closed for sending anything else
    before authenticating).
    """

    def __init__(self, upstream_host: str, upstream_port: int, users: dict[str, str],
                 host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.users = dict(users)
        self.host = host
        self.port = port
        self._scram = {(user, mech): scram_credential(pw, hash_name)
                       for user, pw in self.users.items()
                       for mech, hash_name in SCRAM_HASHES.items()}
        self._lock = threading.Lock()
        self.authentications: Counter = Counter()
        self.failures: Counter = Counter()
        self.refused = 0
        self.refusals: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    # public API

    def start(self) -> "SaslGate":
        """Starts listening (on a free port unless one was given) in a background thread."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:  # reported to start()'s caller
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="sasl-gate", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Closes the listener and every connection, and ends the thread."""
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._loop = None

    @property
    def address(self) -> str:
        """``host:port`` clients use."""
        return f"{self.host}:{self.port}"

    def auth_count(self, user: str | None = None, mechanism: str | None = None) -> int:
        """Successful authentications, optionally of one user and/or mechanism."""
        with self._lock:
            return sum(n for (u, m), n in self.authentications.items()
                       if (user is None or u == user) and (mechanism is None or m == mechanism))

    def failure_count(self, user: str | None = None) -> int:
        """Failed authentications, optionally of one user."""
        with self._lock:
            return sum(n for (u, _m), n in self.failures.items() if user is None or u == user)

    def refused_count(self) -> int:
        """Connections closed for a request other than ApiVersions/SASL before auth."""
        with self._lock:
            return self.refused

    def summary(self) -> str:
        """The counters as one line, for failure reports."""
        with self._lock:
            return (f"gate on {self.port}: authentications {dict(self.authentications)}, "
                    f"failures {dict(self.failures)}, refused {self.refused} "
                    f"(last: {self.refusals[-5:]})")

    def credential(self, user: str, mechanism: str) -> ScramCredential | None:
        """The stored SCRAM credential of ``user`` for ``mechanism``."""
        return self._scram.get((user, mechanism))

    # connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await self._authenticate(reader, writer)
            if upstream is not None:
                await self._relay(reader, writer, *upstream)
        except Refused as e:
            with self._lock:
                self.refused += 1
                self.refusals.append(str(e))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()
            if task is not None:
                self._tasks.discard(task)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self.upstream)

    async def _authenticate(self, reader, writer):
        """Runs the pre-authentication exchange; returns the upstream connection once the
        client authenticated, None when it closed or failed authentication."""
        upstream = None
        exchange: PlainExchange | ScramExchange | None = None
        while True:
            frame = await read_frame(reader)
            if frame is None:
                return None
            api_key = struct.unpack_from(">h", frame)[0] if len(frame) >= 2 else -1
            if api_key == API_VERSIONS:
                header = parse_header(frame, flexible=False)
                if upstream is None:
                    upstream = await self._open_upstream()
                upstream[1].write(struct.pack(">i", len(frame)) + frame)
                await upstream[1].drain()
                answer = await read_frame(upstream[0])
                if answer is None:
                    raise Refused("broker closed during ApiVersions")
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
            elif api_key == SASL_HANDSHAKE:
                header = parse_header(frame, flexible=False)
                if header.api_version != 1:
                    raise Refused(f"SaslHandshake v{header.api_version} (only v1 supported)")
                mechanism = _bytes_string(frame, header.body_offset)
                if mechanism not in MECHANISMS:
                    writer.write(handshake_response(header.correlation_id,
                                                    UNSUPPORTED_SASL_MECHANISM))
                    await writer.drain()
                    continue
                exchange = (PlainExchange(self) if mechanism == "PLAIN"
                            else ScramExchange(self, mechanism))
                writer.write(handshake_response(header.correlation_id, 0))
                await writer.drain()
            elif api_key == SASL_AUTHENTICATE:
                version = struct.unpack_from(">h", frame, 2)[0] if len(frame) >= 4 else -1
                if exchange is None or not 0 <= version <= 2:
                    raise Refused(f"SaslAuthenticate v{version} without a handshake")
                header = parse_header(frame, flexible=version >= 2)
                token = _bytes_field(frame, header.body_offset, compact=version >= 2)
                mechanism = "PLAIN" if isinstance(exchange, PlainExchange) else exchange.mechanism
                try:
                    reply = exchange.step(token)
                except SaslFailure as e:
                    with self._lock:
                        self.failures[(exchange.user, mechanism)] += 1
                    writer.write(authenticate_response(header.correlation_id, version,
                                                       SASL_AUTHENTICATION_FAILED, str(e), b""))
                    await writer.drain()
                    return None
                writer.write(authenticate_response(header.correlation_id, version, 0, None,
                                                   reply))
                await writer.drain()
                if exchange.done:
                    with self._lock:
                        self.authentications[(exchange.user, mechanism)] += 1
                    return upstream or await self._open_upstream()
            else:
                raise Refused(f"api key {api_key} before authentication")

    async def _relay(self, reader, writer, up_reader, up_writer) -> None:
        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def _bytes_string(frame: bytes, pos: int) -> str:
    if pos + 2 > len(frame):
        raise Refused("truncated string")
    (n,) = struct.unpack_from(">h", frame, pos)
    if n < 0 or pos + 2 + n > len(frame):
        raise Refused("bad string length")
    return frame[pos + 2:pos + 2 + n].decode("utf-8", "replace")
