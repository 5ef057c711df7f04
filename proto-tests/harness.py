"""Starts and stops the real broker (tansu) and the quarantine proxy for tests, the demo
and the benchmark.

Everything here talks to processes on loopback only. Paths come from the environment the
scripts set (``QUARANTINE_CACHE``, ``QUARANTINE_BIN``) or from this file's location, so no
machine path is written anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("QUARANTINE_CACHE", Path.home() / ".cache" / "quarantine"))
TANSU_NODE_ID = 111
"""Every tansu instance reports this node id."""

# Variables tansu reads as defaults for its flags: never let the caller's environment leak in.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
              "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


class StartError(RuntimeError):
    """A process did not come up; the message carries the tail of its log."""


def tansu_bin() -> Path:
    """The broker binary installed by scripts/setup.sh."""
    return Path(os.environ.get("TANSU_BIN", CACHE_DIR / "bin" / "tansu"))


def quarantine_bin(profile: str = "debug") -> Path:
    """The proxy binary; ``QUARANTINE_BIN`` overrides the cargo target path."""
    if profile == "debug" and os.environ.get("QUARANTINE_BIN"):
        return Path(os.environ["QUARANTINE_BIN"])
    return REPO_ROOT / "target" / profile / "quarantine"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_node_port_base(node_id: int = TANSU_NODE_ID) -> int:
    """A ``node_port_base`` such that ``base + node_id`` is a free port."""
    for _ in range(50):
        port = free_port()
        if port - node_id > 1024:
            return port - node_id
    raise StartError("no free port for the per-node listener")


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Waits until ``host:port`` accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise StartError(f"nothing listens on {host}:{port} after {timeout}s")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET a URL; returns (status, body), status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; waits for the exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Tansu:
    """One tansu broker with in-memory storage."""

    port: int
    advertised_port: int | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tansu-")))
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tansu.log"

    def start(self, timeout: float = 15.0) -> "Tansu":
        adv = self.advertised_port or self.port
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        binary = tansu_bin()
        if not binary.exists():
            raise StartError(f"tansu is not installed at {binary}: run scripts/setup.sh")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "broker",
                 "--listener-url", f"tcp://127.0.0.1:{self.port}",
                 "--advertised-listener-url", f"tcp://127.0.0.1:{adv}",
                 "--storage-engine", "memory://tansu/", *self.extra_args()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.workdir)
        try:
            wait_port("127.0.0.1", self.port, timeout, self.proc)
        except StartError as e:
            self.stop()
            raise StartError(f"tansu: {e}\n{_tail(self.log_path)}") from None
        return self

    def extra_args(self) -> list[str]:
        """Further broker flags, for subclasses."""
        return []

    def stop(self) -> None:
        # In-memory storage: nothing to flush, and it may wait seconds for open connections.
        stop_process(self.proc, timeout=1.0)


@dataclass
class Quarantine:
    """One quarantine proxy in front of ``upstream``."""

    upstream: str
    profile: str = "debug"
    listen_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    node_port_base: int = field(default_factory=free_node_port_base)
    max_frame_bytes: int = 104857600
    log_level: str = "info"
    extra_yaml: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Environment added after the caller's ``QUARANTINE__`` variables are stripped."""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="quarantine-")))
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    @property
    def node_port(self) -> int:
        return self.node_port_base + TANSU_NODE_ID

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "quarantine.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "quarantine.yaml"

    def proxy_ports(self) -> set[int]:
        """Every port a client may legitimately be told about."""
        return {self.listen_port, self.node_port}

    def write_config(self) -> Path:
        self.config_path.write_text(
            "proxy:\n"
            f"  listen: \"127.0.0.1:{self.listen_port}\"\n"
            "  advertised_host: \"127.0.0.1\"\n"
            f"  node_port_base: {self.node_port_base}\n"
            f"  max_frame_bytes: {self.max_frame_bytes}\n"
            "upstream:\n"
            f"  bootstrap_servers: [\"{self.upstream}\"]\n"
            "admin:\n"
            f"  listen: \"127.0.0.1:{self.admin_port}\"\n"
            "log:\n"
            "  format: text\n"
            f"  level: {self.log_level}\n" + self.extra_yaml)
        return self.config_path

    def binary(self) -> Path:
        return quarantine_bin(self.profile)

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> "Quarantine":
        """Starts the proxy and waits for ``/ready`` (or, with ``wait_ready=False``, only
        for its client listener)."""
        binary = self.binary()
        if not binary.exists():
            raise StartError(f"{binary} does not exist: run cargo build")
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARANTINE__")}
        env["NO_COLOR"] = "1"  # plain log files
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"quarantine exited with {self.proc.returncode}:\n"
                                 f"{_tail(self.log_path)}")
            if wait_ready and http_get(self.admin_url + "/ready", timeout=0.5)[0] == 200:
                return self
            if not wait_ready and _listening(self.listen_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise StartError(f"quarantine not ready after {timeout}s:\n{_tail(self.log_path)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics_text(self) -> str:
        status, body = http_get(self.admin_url + "/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return body

    def metric_sum(self, name: str) -> float:
        """Sum of every sample of ``name`` (all label sets) in /metrics."""
        return sum_metric(self.metrics_text(), name)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def sum_metric(text: str, name: str) -> float:
    """Adds up the samples of one metric in Prometheus text format."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            total += float(m.group(3))
    return total


def pids_connected_to(port: int) -> set[int]:
    """Pids of processes holding an established TCP connection whose remote port is ``port``
    on loopback: who talks to the broker directly."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            remote, state, inode = cols[2], cols[3], cols[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    pids: set[int] = set()
    if not inodes:
        return pids
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            for fd in (proc_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(proc_dir.name))
                    break
        except OSError:
            continue
    return pids


def kip848_gate_for(tansu: Tansu, group_protocol: str):
    """For ``consumer``, a started KIP-848 gate (``kip848_gate``) in front of ``tansu``,
    which then advertises the gate's address as its own: tansu 0.6.0 does not speak
    ConsumerGroupHeartbeat. The gate also holds everyone to the Kafka 4.x protocol baseline
    (KIP-896): a request of a removed version closes the connection and is counted in
    ``gate.refused``. None for ``classic``. The gate's session timeout is the
    ``session.timeout.ms`` most classic test applications use (3 s), so both protocols
    wait about as long for a member that died (a Kafka 4.x broker waits 45 s at least:
    ``group.consumer.min.session.timeout.ms``)."""
    if group_protocol == "classic":
        return None
    if group_protocol != "consumer":
        raise ValueError(f"group protocol {group_protocol!r}")
    from kip848_gate import KIP896_BASELINE, Kip848Gate
    gate = Kip848Gate("127.0.0.1", tansu.port, session_timeout_ms=3000,
                      baseline=KIP896_BASELINE).start()
    tansu.advertised_port = gate.port
    return gate


class Stack:
    """A broker and, unless ``via`` is ``direct``, a quarantine proxy in front of it.

    ``bootstrap`` is what clients use. ``via=direct`` (or ``PROTO_TESTS_VIA=direct``) points
    clients at the broker itself, to tell a proxy bug from a broker bug. With
    ``group_protocol="consumer"`` the broker is tansu behind the KIP-848 gate (``kip848``).
    """

    def __init__(self, via: str | None = None, workdir: Path | None = None,
                 group_protocol: str = "classic", **quarantine_args):
        self.via = via or os.environ.get("PROTO_TESTS_VIA", "proxy")
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="stack-"))
        (self.workdir / "tansu").mkdir(parents=True, exist_ok=True)
        (self.workdir / "quarantine").mkdir(parents=True, exist_ok=True)
        self.tansu = Tansu(port=free_port(), workdir=self.workdir / "tansu")
        self.group_protocol = group_protocol
        self.kip848 = kip848_gate_for(self.tansu, group_protocol)
        self.proxy: Quarantine | None = None
        quarantine_args.setdefault("workdir", self.workdir / "quarantine")
        self._quarantine_args = quarantine_args

    def start(self) -> "Stack":
        try:
            self.tansu.start()
            if self.via == "proxy":
                self.proxy = Quarantine(upstream=self.broker, **self._quarantine_args)
                self.proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def broker(self) -> str:
        """The broker as clients would reach it without the proxy (the KIP-848 gate when
        there is one: to clients, it is the broker)."""
        return self.kip848.address if self.kip848 is not None else self.tansu.address

    @property
    def broker_port(self) -> int:
        return self.kip848.port if self.kip848 is not None else self.tansu.port

    @property
    def bootstrap(self) -> str:
        return self.proxy.bootstrap if self.proxy else self.broker

    def allowed_ports(self) -> set[int]:
        """Ports a client may see in metadata."""
        return self.proxy.proxy_ports() if self.proxy else {self.broker_port}

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()
        self.tansu.stop()
        if self.kip848 is not None:
            self.kip848.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self) -> str:
        out = f"--- kip848 gate ---\n{self.kip848.summary()}\n" if self.kip848 else ""
        out += f"--- tansu log ---\n{_tail(self.tansu.log_path)}\n"
        if self.proxy:
            out += f"--- quarantine log ---\n{_tail(self.proxy.log_path, 60)}\n"
        return out
