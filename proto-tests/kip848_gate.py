"""A test-only KIP-848 group coordinator in front of a broker that does not speak it (the
tansu build the tests use answers ConsumerGroupHeartbeat with UNSUPPORTED_VERSION).

Like ``sasl_gate``, it is a TCP relay the broker advertises as its own address, so every
connection a client (or the proxy) opens to "the broker" goes through it. It answers
ConsumerGroupHeartbeat (v0, v1) itself and forwards everything else, except that it:

- adds ConsumerGroupHeartbeat v0-v1 to the ApiVersions answer (and caps OffsetCommit and
  OffsetFetch at v9, the versions whose member fields it checks);
- checks OffsetCommit and OffsetFetch of the groups it coordinates against their members
  and epochs (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH, FENCED_MEMBER_EPOCH, UNSUPPORTED_VERSION
  for a KIP-848 member committing below v9) and forwards the valid ones to the broker with
  the member fields blanked (generation -1, empty member id): the broker stores the offsets
  as the commits of an empty classic group. Offsets live in the broker, not here.

What of KIP-848 it covers (the subset real clients use): member ids made by the coordinator
(v0) or by the client (v1), member epochs and the group epoch, a server-side ``uniform``
(sticky, balanced) or ``range`` assignor over the subscribed topic names (no regex),
assignments by topic id, revocation before re-assignment (a partition goes to its new owner
only once the old owner's heartbeat no longer lists it), the heartbeat interval, session
timeout and rebalance timeout expiry, the leave heartbeat (epoch -1) and a static member's
temporary leave (epoch -2, its place kept until the session times out; a new member with
the same instance id takes it over), FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID answers to
heartbeats. Not covered: regex subscriptions, rack-aware assignment, ConsumerGroupDescribe
(left to the broker), mixed classic/consumer groups, persistence across a gate restart.

With a ``baseline`` (``KIP896_BASELINE``) it is also a Kafka 4.x broker in what it speaks:
ApiVersions advertises no version below the baseline, and a request below it closes the
connection (as Kafka 4.0 does), counted in ``refused``.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sasl_gate import Refused, _put_uvarint, _skip_tags, _uvarint, read_frame

API_VERSIONS = 18
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
CONSUMER_GROUP_HEARTBEAT = 68

NONE = 0
UNKNOWN_MEMBER_ID = 25
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
FENCED_MEMBER_EPOCH = 110
UNRELEASED_INSTANCE_ID = 111
UNSUPPORTED_ASSIGNOR = 112
STALE_MEMBER_EPOCH = 113

LEAVE = -1
STATIC_LEAVE = -2

ASSIGNORS = ("uniform", "range")

KIP896_BASELINE = {
    0: 7, 1: 4, 2: 1, 3: 4, 8: 2, 9: 1, 10: 1, 11: 2, 17: 1, 19: 2, 20: 1, 23: 2, 29: 1,
    30: 1, 31: 1, 32: 1, 34: 1, 35: 1, 38: 1, 39: 1, 40: 1, 41: 1, 42: 1,
}
"""API key -> lowest version left once every version KIP-896 deprecated (the
``deprecatedVersions`` of Kafka 3.7-3.9's message definitions) is gone. Kafka 4.0 removed
most of them (it keeps Produce v3-v6 for now), so this is the 4.x baseline or stricter."""


# --- wire helpers ---------------------------------------------------------------------------

class Reader:
    """Sequential reader over a request or response body."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def fixed(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise Refused("truncated field")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def i8(self) -> int:
        return self.fixed(">b")

    def i16(self) -> int:
        return self.fixed(">h")

    def i32(self) -> int:
        return self.fixed(">i")

    def i64(self) -> int:
        return self.fixed(">q")

    def uuid(self) -> bytes:
        if self.pos + 16 > len(self.data):
            raise Refused("truncated uuid")
        self.pos += 16
        return self.data[self.pos - 16:self.pos]

    def uvarint(self) -> int:
        value, self.pos = _uvarint(self.data, self.pos)
        return value

    def string(self, compact: bool) -> str | None:
        n = self.uvarint() - 1 if compact else self.i16()
        if n < 0:
            return None
        if self.pos + n > len(self.data):
            raise Refused("truncated string")
        self.pos += n
        return self.data[self.pos - n:self.pos].decode("utf-8", "replace")

    def array_len(self, compact: bool) -> int:
        return self.uvarint() - 1 if compact else self.i32()

    def tags(self) -> None:
        self.pos = _skip_tags(self.data, self.pos)


def c_str(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    raw = s.encode()
    return _put_uvarint(len(raw) + 1) + raw


def c_len(n: int | None) -> bytes:
    return b"\x00" if n is None else _put_uvarint(n + 1)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def frame(correlation_id: int, body: bytes, flexible_header: bool) -> bytes:
    """A size-prefixed response: header v1 (tagged fields) when ``flexible_header``."""
    out = i32(correlation_id) + (b"\x00" if flexible_header else b"") + body
    return i32(len(out)) + out


@dataclass
class Header:
    api_key: int
    api_version: int
    correlation_id: int
    body: int


# Request header v2 (with tagged fields) from these versions on; the share-group APIs
# (ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, ShareAcknowledge) always.
FLEXIBLE_FROM = {API_VERSIONS: 3, METADATA: 9, OFFSET_COMMIT: 8, OFFSET_FETCH: 6,
                 CONSUMER_GROUP_HEARTBEAT: 0, 76: 0, 77: 0, 78: 0, 79: 0}


def parse_header(data: bytes) -> Header:
    if len(data) < 10:
        raise Refused("short request")
    api_key, version, correlation_id, client_len = struct.unpack_from(">hhih", data)
    pos = 10 + max(client_len, 0)
    flex_from = FLEXIBLE_FROM.get(api_key)
    if flex_from is not None and version >= flex_from:
        pos = _skip_tags(data, pos)
    return Header(api_key, version, correlation_id, pos)


# --- the group model ------------------------------------------------------------------------

Assignment = dict[bytes, set[int]]  # topic id -> partitions


def copy_assignment(a: Assignment) -> Assignment:
    return {t: set(p) for t, p in a.items() if p}


def minus(a: Assignment, b: Assignment) -> Assignment:
    return {t: p - b.get(t, set()) for t, p in a.items() if p - b.get(t, set())}


def intersect(a: Assignment, b: Assignment) -> Assignment:
    return {t: p & b.get(t, set()) for t, p in a.items() if p & b.get(t, set())}


def pairs(a: Assignment) -> set[tuple[bytes, int]]:
    return {(t, p) for t, ps in a.items() for p in ps}


def from_pairs(ps) -> Assignment:
    out: Assignment = {}
    for t, p in ps:
        out.setdefault(t, set()).add(p)
    return out


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    subscribed: list[str]
    rebalance_timeout_ms: int
    assignor: str | None
    epoch: int = 0
    previous_epoch: int = -1
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    state: str = "stable"  # stable | unrevoked | unreleased
    last_heartbeat: float = field(default_factory=time.monotonic)
    revocation_since: float | None = None
    sent: tuple | None = None  # (epoch, assignment pairs) last sent to the client


@dataclass
class Group:
    group_id: str
    epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, Member] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    metadata: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # name -> (id, n)

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.subscribed}

    def owner_elsewhere(self, me: str) -> set[tuple[bytes, int]]:
        """Partitions another member still holds (assigned or not yet revoked)."""
        out: set[tuple[bytes, int]] = set()
        for mid, m in self.members.items():
            if mid != me:
                out |= pairs(m.assigned) | pairs(m.pending_revocation)
        return out


def assign(group: Group, assignor: str) -> dict[str, Assignment]:
    """The target assignment of ``group`` from its members' subscriptions."""
    members = sorted(group.members)
    topics = {name: meta for name, meta in group.metadata.items()
              if any(name in group.members[m].subscribed for m in members)}
    if assignor == "range":
        out: dict[str, Assignment] = {m: {} for m in members}
        for name, (tid, count) in sorted(topics.items()):
            subs = [m for m in members if name in group.members[m].subscribed]
            if not subs:
                continue
            per, extra = divmod(count, len(subs))
            start = 0
            for i, m in enumerate(subs):
                n = per + (1 if i < extra else 0)
                if n:
                    out[m].setdefault(tid, set()).update(range(start, start + n))
                start += n
        return out
    # uniform: sticky and balanced; keeps each partition where the previous target had
    # it when that member is still subscribed and not over its share.
    all_parts = sorted((tid, p) for name, (tid, count) in topics.items() for p in range(count))
    subscribers = {(tid, p): {m for m in members if name in group.members[m].subscribed}
                   for name, (tid, count) in topics.items() for p in range(count)}
    owned: dict[str, set[tuple[bytes, int]]] = {m: set() for m in members}
    free = []
    for tp in all_parts:
        prev = next((m for m, a in group.target.items() if tp[1] in a.get(tp[0], set())), None)
        if prev in owned and prev in subscribers[tp]:
            owned[prev].add(tp)
        else:
            free.append(tp)
    if members:
        quota_hi = -(-len(all_parts) // len(members))
        for m in members:  # shed above the ceiling
            while len(owned[m]) > quota_hi:
                tp = max(owned[m])
                owned[m].discard(tp)
                free.append(tp)
        for tp in sorted(free):
            cands = sorted(subscribers[tp], key=lambda m: (len(owned[m]), m))
            if cands:
                owned[cands[0]].add(tp)
        moved = True
        while moved:  # even out by one until balanced among common subscribers
            moved = False
            for m in sorted(members, key=lambda m: -len(owned[m])):
                for tp in sorted(owned[m]):
                    to = min(subscribers[tp], key=lambda x: (len(owned[x]), x))
                    if len(owned[to]) + 1 < len(owned[m]):
                        owned[m].discard(tp)
                        owned[to].add(tp)
                        moved = True
                        break
    return {m: from_pairs(owned[m]) for m in members}


# --- the gate -------------------------------------------------------------------------------

class Kip848Gate:
    """Relays to ``upstream_host:upstream_port`` and coordinates KIP-848 consumer groups.

    Counters (under the lock): ``heartbeats[error code]``, ``commits[error code]``,
    ``fetches[error code]`` (OffsetFetch checks), ``raw[api key]`` (the request bodies the
    gate forwarded untouched for the APIs listed in ``record_apis``).
    """

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1",
                 port: int = 0, session_timeout_ms: int = 6000,
                 heartbeat_interval_ms: int = 500, assignor: str = "uniform",
                 extra_apis: dict[int, tuple[int, int]] | None = None,
                 canned: dict[int, bytes] | None = None,
                 baseline: dict[int, int] | None = None):
        if assignor not in ASSIGNORS:
            raise ValueError(f"assignor {assignor!r} is not one of {ASSIGNORS}")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.assignor = assignor
        self.extra_apis = dict(extra_apis or {})
        self.canned = dict(canned or {})
        self.baseline = dict(baseline or {})
        self.refused: Counter = Counter()  # (api key, version) below the baseline
        self.versions: Counter = Counter()  # (api key, version) of every request
        self.groups: dict[str, Group] = {}
        self._lock = threading.RLock()
        self.heartbeats: Counter = Counter()
        self.commits: Counter = Counter()
        self.fetches: Counter = Counter()
        self.raw: dict[int, list[bytes]] = {}
        self.events: list[tuple[str, str, str]] = []  # (group, member, what)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()
        self._meta_conn = None
        self._meta_lock: asyncio.Lock | None = None

    # lifecycle

    def start(self) -> "Kip848Gate":
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._meta_lock = asyncio.Lock()
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:
                errors.append(e)
                ready.set()
                loop.close()
                return
            reaper = loop.create_task(self._reaper())
            self._tasks.add(reaper)
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="kip848-gate", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._meta_conn is not None:
                self._meta_conn[1].close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._loop = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # inspection (for tests)

    def members(self, group_id: str) -> dict[str, dict]:
        """Per member id: epoch, state and assigned ``{topic id hex: sorted partitions}``."""
        with self._lock:
            g = self.groups.get(group_id)
            if g is None:
                return {}
            return {mid: {"epoch": m.epoch, "state": m.state, "instance_id": m.instance_id,
                          "assigned": {t.hex(): sorted(p) for t, p in m.assigned.items()},
                          "pending": {t.hex(): sorted(p)
                                      for t, p in m.pending_revocation.items()}}
                    for mid, m in g.members.items()}

    def group_epoch(self, group_id: str) -> int:
        with self._lock:
            g = self.groups.get(group_id)
            return g.epoch if g else 0

    def summary(self) -> str:
        with self._lock:
            groups = {gid: {mid: (m.epoch, m.state, len(pairs(m.assigned)))
                            for mid, m in g.members.items()} for gid, g in self.groups.items()}
            return (f"kip848 gate on {self.port}: heartbeats {dict(self.heartbeats)}, "
                    f"commits {dict(self.commits)}, offset fetches {dict(self.fetches)}, "
                    f"refused below the baseline {dict(self.refused)}, "
                    f"groups {groups}, last events {self.events[-12:]}")

    # connections

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        upstream = None
        try:
            upstream = await asyncio.open_connection(*self.upstream)
            await self._relay(reader, writer, *upstream)
        except (Refused, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()
            if task is not None:
                self._tasks.discard(task)

    async def _relay(self, reader, writer, up_reader, up_writer) -> None:
        """Requests one at a time in order; responses are written in request order (the
        client may pipeline, and answers from here must not overtake the broker's)."""
        pending: asyncio.Queue = asyncio.Queue()

        async def responses() -> None:
            while True:
                item = await pending.get()
                if item is None:
                    return
                kind, value = item
                if kind == "local":
                    out = value
                else:
                    transform = value
                    answer = await read_frame(up_reader)
                    if answer is None:
                        writer.close()
                        return
                    out = transform(answer) if transform else answer
                    out = i32(len(out)) + out
                writer.write(out)
                await writer.drain()

        sender = asyncio.create_task(responses())
        try:
            while True:
                data = await read_frame(reader)
                if data is None:
                    break
                h = parse_header(data)
                local, forward, transform = await self._handle(h, data)
                if local is not None:
                    pending.put_nowait(("local", local))
                    continue
                up_writer.write(i32(len(forward)) + forward)
                await up_writer.drain()
                pending.put_nowait(("up", transform))
        finally:
            pending.put_nowait(None)
            try:
                await asyncio.wait_for(sender, 30)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                sender.cancel()

    async def _handle(self, h: Header, data: bytes):
        """(local answer, bytes to forward, response transform)."""
        with self._lock:
            self.versions[(h.api_key, h.api_version)] += 1
        if h.api_key == API_VERSIONS:
            return None, data, lambda r: self._api_versions(r, h.api_version)
        if h.api_version < self.baseline.get(h.api_key, 0):
            # A version the broker no longer speaks: Kafka closes the connection.
            with self._lock:
                self.refused[(h.api_key, h.api_version)] += 1
            raise Refused(f"api {h.api_key} v{h.api_version} is below the baseline")
        if h.api_key == CONSUMER_GROUP_HEARTBEAT:
            if h.api_version > 1:
                body = i32(0) + i16(UNSUPPORTED_VERSION) + c_str(None) + c_str(None) + i32(0)
                body += i32(0) + struct.pack(">b", -1) + b"\x00"
                return frame(h.correlation_id, body, True), None, None
            return await self._handle_heartbeat(h, data), None, None
        if h.api_key == OFFSET_COMMIT:
            return self._offset_commit(h, data)
        if h.api_key == OFFSET_FETCH:
            return self._offset_fetch(h, data)
        if h.api_key in self.canned:
            with self._lock:
                self.raw.setdefault(h.api_key, []).append(data[h.body:])
            return frame(h.correlation_id, self.canned[h.api_key], True), None, None
        return None, data, None

    # ApiVersions

    def _api_versions(self, resp: bytes, version: int) -> bytes:
        r = Reader(resp)
        correlation_id = r.i32()
        error = r.i16()
        if error != NONE:
            return resp
        flexible = version >= 3
        n = r.array_len(flexible)
        apis = {}
        for _ in range(n):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            if flexible:
                r.tags()
            apis[key] = (lo, hi)
        rest = resp[r.pos:]
        apis[CONSUMER_GROUP_HEARTBEAT] = (0, 1)
        for key in (OFFSET_COMMIT, OFFSET_FETCH):
            if key in apis:
                apis[key] = (apis[key][0], min(apis[key][1], 9))
        apis.update(self.extra_apis)
        for key, lowest in self.baseline.items():
            if key in apis:
                lo, hi = apis[key]
                if max(lo, lowest) > hi:
                    del apis[key]
                else:
                    apis[key] = (max(lo, lowest), hi)
        out = i32(correlation_id) + i16(error)
        out += c_len(len(apis)) if flexible else i32(len(apis))
        for key, (lo, hi) in sorted(apis.items()):
            out += i16(key) + i16(lo) + i16(hi) + (b"\x00" if flexible else b"")
        return out + rest

    # metadata for the assignor

    async def _metadata(self, topics: set[str]) -> dict[str, tuple[bytes, int]]:
        """``name -> (topic id, partition count)`` from the broker (Metadata v12)."""
        if not topics:
            return {}
        assert self._meta_lock is not None
        async with self._meta_lock:
            for attempt in range(2):
                try:
                    if self._meta_conn is None:
                        self._meta_conn = await asyncio.open_connection(*self.upstream)
                    body = c_len(len(topics))
                    for t in sorted(topics):
                        body += b"\x00" * 16 + c_str(t) + b"\x00"
                    body += b"\x00" + b"\x00" + b"\x00"  # no auto-create, no ops, tags
                    cid = b"kip848-gate"
                    req = i16(METADATA) + i16(12) + i32(1) + i16(len(cid)) + cid + b"\x00" + body
                    self._meta_conn[1].write(i32(len(req)) + req)
                    await self._meta_conn[1].drain()
                    resp = await read_frame(self._meta_conn[0])
                    if resp is None:
                        raise ConnectionError("broker closed the metadata connection")
                    return parse_metadata_v12(resp)
                except (ConnectionError, OSError):
                    self._meta_conn = None
                    if attempt:
                        raise
        return {}

    # ConsumerGroupHeartbeat

    async def _handle_heartbeat(self, h: Header, data: bytes) -> bytes:
        r = Reader(data, h.body)
        req = {
            "group": r.string(True), "member": r.string(True), "epoch": r.i32(),
            "instance": r.string(True), "rack": r.string(True), "rebalance_ms": r.i32(),
        }
        n = r.array_len(True)
        req["topics"] = None if n < 0 else [r.string(True) for _ in range(n)]
        req["regex"] = r.string(True) if h.api_version >= 1 else None
        req["assignor"] = r.string(True)
        n = r.array_len(True)
        owned = None
        if n >= 0:
            owned = {}
            for _ in range(n):
                tid = r.uuid()
                k = r.array_len(True)
                owned[tid] = {r.i32() for _ in range(k)}
                r.tags()
        req["owned"] = owned
        client_id_len = struct.unpack_from(">h", data, 8)[0]
        req["client_id"] = data[10:10 + max(client_id_len, 0)].decode("utf-8", "replace")
        topics = set(req["topics"] or [])
        with self._lock:
            g = self.groups.get(req["group"] or "")
            if g is not None:
                topics |= g.subscribed_topics()
        try:
            meta = await self._metadata(topics)
        except (ConnectionError, OSError):
            meta = None
        with self._lock:
            error, message, member, assignment = self._heartbeat(req, h.api_version, meta)
            self.heartbeats[error] += 1
        body = i32(0) + i16(error) + c_str(message)
        if error:
            body += c_str(None) + i32(0) + i32(0) + struct.pack(">b", -1) + b"\x00"
            return frame(h.correlation_id, body, True)
        body += c_str(member.member_id) + i32(member.epoch) + i32(self.heartbeat_interval_ms)
        if assignment is None:
            body += struct.pack(">b", -1)
        else:
            body += struct.pack(">b", 1) + c_len(len(assignment))
            for tid, parts in sorted(assignment.items()):
                body += tid + c_len(len(parts)) + b"".join(i32(p) for p in sorted(parts))
                body += b"\x00"
            body += b"\x00"
        body += b"\x00"
        return frame(h.correlation_id, body, True)

    def _event(self, group: str, member: str, what: str) -> None:
        self.events.append((group, member, what))
        del self.events[:-500]

    def _heartbeat(self, req: dict, version: int, meta):
        """Runs one heartbeat under the lock: (error, message, member, assignment to send)."""
        gid, mid, epoch = req["group"], req["member"] or "", req["epoch"]
        if not gid:
            return INVALID_REQUEST, "GroupId can't be empty.", None, None
        if req["regex"]:
            return INVALID_REQUEST, "this test coordinator does not do regex subscriptions", \
                None, None
        if req["assignor"] is not None and req["assignor"] not in ASSIGNORS:
            return UNSUPPORTED_ASSIGNOR, f"assignor {req['assignor']} unknown", None, None
        if version >= 1 and not mid:
            return INVALID_REQUEST, "MemberId can't be empty.", None, None
        g = self.groups.setdefault(gid, Group(gid))
        now = time.monotonic()

        if epoch in (LEAVE, STATIC_LEAVE):
            m = g.members.get(mid)
            if m is None:
                return UNKNOWN_MEMBER_ID, f"member {mid} is not in group {gid}", None, None
            if epoch == STATIC_LEAVE and m.instance_id:
                # Its place is kept: the epoch it had comes back with its successor.
                m.previous_epoch, m.epoch = m.epoch, STATIC_LEAVE
                m.last_heartbeat = now
                self._event(gid, mid, "static-leave")
                return NONE, None, Member(mid, m.instance_id, m.client_id, [], 0, None,
                                          epoch=STATIC_LEAVE), None
            self._remove(g, mid, "leave")
            return NONE, None, Member(mid, None, "", [], 0, None, epoch=LEAVE), None

        if epoch == 0:
            if not mid:
                mid = uuid.uuid4().hex[:22]
            old = None
            if req["instance"]:
                old = next((m for m in g.members.values()
                            if m.instance_id == req["instance"] and m.member_id != mid), None)
                if old is not None and old.epoch != STATIC_LEAVE:
                    return (UNRELEASED_INSTANCE_ID,
                            f"static member {req['instance']} is still in the group", None, None)
            m = g.members.get(mid)
            if m is None:
                if req["topics"] is None:
                    return INVALID_REQUEST, "SubscribedTopicNames must be set on join", None, None
                m = Member(mid, req["instance"], req["client_id"], list(req["topics"]),
                           req["rebalance_ms"], req["assignor"])
                if old is not None:  # a static member comes back: takes over its place
                    del g.members[old.member_id]
                    m.epoch, m.previous_epoch = old.previous_epoch, old.previous_epoch
                    m.assigned, m.pending_revocation = old.assigned, old.pending_revocation
                    g.target[mid] = g.target.pop(old.member_id, {})
                    self._event(gid, mid, f"replaces {old.member_id}")
                else:
                    g.epoch += 1
                    self._event(gid, mid, f"join, group epoch {g.epoch}")
                g.members[mid] = m
            else:
                # A join with a known member id: the member lost its state; start over.
                m.assigned, m.pending_revocation, m.state = {}, {}, "stable"
                m.epoch = 0
                g.epoch += 1
        else:
            m = g.members.get(mid)
            if m is None:
                return UNKNOWN_MEMBER_ID, f"member {mid} is not in group {gid}", None, None
            if epoch > m.epoch:
                return FENCED_MEMBER_EPOCH, f"epoch {epoch} is ahead of {m.epoch}", None, None
            if epoch < m.epoch:
                owned = pairs(req["owned"] or {})
                if not (epoch == m.previous_epoch and req["owned"] is not None
                        and owned <= pairs(m.assigned)):
                    return (FENCED_MEMBER_EPOCH, f"epoch {epoch} is behind {m.epoch}", None,
                            None)
        m.last_heartbeat = now
        if req["rebalance_ms"] > 0:
            m.rebalance_timeout_ms = req["rebalance_ms"]
        if req["topics"] is not None and sorted(req["topics"]) != sorted(m.subscribed):
            m.subscribed = list(req["topics"])
            g.epoch += 1
            self._event(gid, mid, f"subscription {m.subscribed}, group epoch {g.epoch}")
        if meta is not None:
            current = {n: v for n, v in meta.items()}
            relevant = {n: v for n, v in current.items() if n in g.subscribed_topics()}
            known = {n: v for n, v in g.metadata.items() if n in g.subscribed_topics()}
            if relevant != known:
                g.metadata.update(current)
                g.epoch += 1
                self._event(gid, mid, f"metadata {sorted(relevant)}, group epoch {g.epoch}")
        if g.epoch > g.assignment_epoch:
            g.target = assign(g, m.assignor or self.assignor)
            g.assignment_epoch = g.epoch
        self._reconcile(g, m, req["owned"], now)
        send = None
        state = (m.epoch, frozenset(pairs(m.assigned)))
        if epoch == 0 or m.sent != state or (
                req["owned"] is not None and pairs(req["owned"]) != pairs(m.assigned)):
            send = copy_assignment(m.assigned)
            m.sent = state
        return NONE, None, m, send

    def _reconcile(self, g: Group, m: Member, owned: Assignment | None, now: float) -> None:
        """KIP-848's current-assignment builder, for one member."""
        target = g.target.get(m.member_id, {})
        if m.state == "unrevoked":
            if owned is None or pairs(owned) & pairs(m.pending_revocation):
                return  # still holds partitions it must give up
            m.pending_revocation = {}
            m.revocation_since = None
            self._event(g.group_id, m.member_id, "revoked")
        if m.epoch == g.assignment_epoch and m.state == "stable":
            return
        keep = intersect(m.assigned, target)
        revoke = minus(m.assigned, target)
        if revoke:
            m.assigned = keep
            m.pending_revocation = revoke
            m.state = "unrevoked"
            m.revocation_since = now
            self._event(g.group_id, m.member_id,
                        f"revoke {sorted((t.hex()[:6], p) for t, p in pairs(revoke))}")
            return
        taken = g.owner_elsewhere(m.member_id)
        wanted = pairs(target) - pairs(keep)
        grant = {tp for tp in wanted if tp not in taken}
        m.assigned = from_pairs(pairs(keep) | grant)
        if m.epoch != g.assignment_epoch:
            m.previous_epoch, m.epoch = m.epoch, g.assignment_epoch
        m.state = "stable" if grant == wanted else "unreleased"

    def _remove(self, g: Group, mid: str, why: str) -> None:
        g.members.pop(mid, None)
        g.target.pop(mid, None)
        g.epoch += 1
        self._event(g.group_id, mid, f"{why}, group epoch {g.epoch}")

    async def _reaper(self) -> None:
        """Session timeout (no heartbeat) and rebalance timeout (partitions not revoked)."""
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            with self._lock:
                for g in self.groups.values():
                    for mid, m in list(g.members.items()):
                        if now - m.last_heartbeat > self.session_timeout_ms / 1000:
                            self._remove(g, mid, "session timeout")
                        elif (m.revocation_since is not None and m.rebalance_timeout_ms > 0
                              and now - m.revocation_since > m.rebalance_timeout_ms / 1000):
                            self._remove(g, mid, "rebalance timeout")

    # OffsetCommit / OffsetFetch

    def _check_member(self, gid: str, mid: str | None, epoch: int, version: int,
                      api: str):
        """KIP-848's validateOffsetCommit / validateOffsetFetch: error code or NONE."""
        g = self.groups.get(gid)
        if g is None:
            return NONE
        if epoch < 0 and not mid:
            # An admin (or a consumer outside group management): may always read offsets,
            # may commit only while the group has no members.
            return NONE if api == "fetch" or not g.members else UNKNOWN_MEMBER_ID
        m = g.members.get(mid or "")
        if m is None:
            return UNKNOWN_MEMBER_ID
        if api == "commit" and version < 9:
            return UNSUPPORTED_VERSION
        if epoch > m.epoch:
            return FENCED_MEMBER_EPOCH
        if epoch < m.epoch:
            return STALE_MEMBER_EPOCH
        return NONE

    def _offset_commit(self, h: Header, data: bytes):
        v = h.api_version
        flexible = v >= 8
        r = Reader(data, h.body)
        gid = r.string(flexible) or ""
        gen_at = r.pos
        generation = r.i32() if v >= 1 else -1
        mid = r.string(flexible) if v >= 1 else ""
        instance_end = r.pos
        if v >= 7:
            r.string(flexible)
            instance_end = r.pos
        with self._lock:
            if gid not in self.groups:
                return None, data, None
            error = self._check_member(gid, mid, generation, v, "commit")
            self.commits[error] += 1
            if error:
                self._event(gid, mid or "", f"commit v{v} at epoch {generation}: error {error}")
        if error == NONE:
            # Blank the member: the broker stores it as an empty classic group's commit.
            blank = i32(-1) + (c_str("") if flexible else i16(0))
            if v >= 7:
                blank += c_str(None) if flexible else i16(-1)
            return None, data[:gen_at] + blank + data[instance_end:], None
        if v < 1:
            return None, data, None
        # Every partition gets the error.
        if v >= 2 and v <= 4:
            r.i64()
        topics = []
        for _ in range(r.array_len(flexible)):
            name = r.string(flexible)
            parts = []
            for _ in range(r.array_len(flexible)):
                parts.append(r.i32())
                r.i64()
                if v >= 6:
                    r.i32()
                r.string(flexible)
                if flexible:
                    r.tags()
            if flexible:
                r.tags()
            topics.append((name, parts))
        body = i32(0) if v >= 3 else b""
        body += c_len(len(topics)) if flexible else i32(len(topics))
        for name, parts in topics:
            body += c_str(name) if flexible else i16(len(name.encode())) + name.encode()
            body += c_len(len(parts)) if flexible else i32(len(parts))
            for p in parts:
                body += i32(p) + i16(error) + (b"\x00" if flexible else b"")
            body += b"\x00" if flexible else b""
        body += b"\x00" if flexible else b""
        return frame(h.correlation_id, body, flexible), None, None

    def _offset_fetch(self, h: Header, data: bytes):
        v = h.api_version
        if v < 9:
            return None, data, None
        r = Reader(data, h.body)
        n = r.array_len(True)
        if n != 1:
            return None, data, None
        gid = r.string(True) or ""
        member_at = r.pos
        mid = r.string(True)
        epoch = r.i32()
        end = r.pos
        with self._lock:
            if gid not in self.groups:
                return None, data, None
            error = self._check_member(gid, mid, epoch, v, "fetch")
            self.fetches[error] += 1
            if error:
                self._event(gid, mid or "", f"offset fetch at epoch {epoch}: error {error}")
        if error == NONE:
            return None, data[:member_at] + c_str(None) + i32(-1) + data[end:], None
        body = i32(0) + c_len(1) + c_str(gid) + c_len(0) + i16(error) + b"\x00" + b"\x00"
        return frame(h.correlation_id, body, True), None, None


def parse_metadata_v12(resp: bytes) -> dict[str, tuple[bytes, int]]:
    """``name -> (topic id, partition count)`` of the topics a Metadata v12 response
    found (response header v1: correlation id, tagged fields)."""
    r = Reader(resp)
    r.i32()
    r.tags()
    r.i32()  # throttle
    for _ in range(r.array_len(True)):
        r.i32()
        r.string(True)
        r.i32()
        r.string(True)
        r.tags()
    r.string(True)  # cluster id
    r.i32()  # controller
    out = {}
    for _ in range(r.array_len(True)):
        error = r.i16()
        name = r.string(True)
        tid = r.uuid()
        r.i8()  # internal
        count = 0
        for _ in range(r.array_len(True)):
            r.i16()
            r.i32()
            r.i32()
            r.i32()
            for _ in range(3):
                k = r.array_len(True)
                r.pos += 4 * max(k, 0)
            r.tags()
            count += 1
        r.i32()  # authorized operations
        r.tags()
        if error == NONE and name and count:
            out[name] = (tid, count)
    return out
