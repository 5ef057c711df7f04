"""Runs the poison tests' consumer applications as real processes, the way a container
runtime runs a pod: ``Supervisor`` starts one and starts it again whenever it exits, and
collects the JSON events it prints on stdout (one object per line, see each app's doc).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

APPS = Path(__file__).resolve().parent
JS_CONSUMER = APPS.parent / "js" / "poison_consumer.js"


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def app_command(client: str, spec: dict) -> list[str]:
    """The command line of a consumer application: ``client`` is ``rdkafka``,
    ``kafka-python`` or ``kafkajs``."""
    arg = json.dumps(spec)
    if client == "rdkafka":
        return [sys.executable, str(APPS / "rdkafka_app.py"), arg]
    if client == "kafka-python":
        return [sys.executable, "-W", "ignore", str(APPS / "kafka_python_app.py"), arg]
    if client == "kafkajs":
        return ["node", str(JS_CONSUMER), arg]
    raise ValueError(client)


def start_app(stack, client: str, logdir: Path, name: str, **spec) -> "Supervisor":
    """Starts an application through ``stack``'s proxy, supervised; its stderr goes to
    ``logdir/<name>.log``. A librdkafka application joins with the stack's group protocol."""
    spec.setdefault("bootstrap", stack.bootstrap)
    if client == "rdkafka":
        spec.setdefault("group_protocol", getattr(stack, "group_protocol", "classic"))
    return Supervisor(app_command(client, spec), logdir / f"{name}.log").start()


class Supervisor:
    """Runs an application process and restarts it whenever it exits, as a container
    runtime would. Collects the JSON events the application prints on stdout."""

    def __init__(self, cmd: list[str], log_path: Path, restart_delay: float = 0.2,
                 max_runs: int = 200):
        self.cmd = cmd
        self.log_path = log_path
        self.restart_delay = restart_delay
        self.max_runs = max_runs
        self.events: list[dict] = []
        self.exits: list[int] = []
        self.runs = 0
        self.gave_up = False
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> "Supervisor":
        self._thread.start()
        return self

    def _loop(self) -> None:
        with open(self.log_path, "ab") as log:
            while not self._stop.is_set():
                if self.runs >= self.max_runs:
                    self.gave_up = True
                    return
                self.runs += 1
                log.write(f"--- run {self.runs} ---\n".encode())
                log.flush()
                proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=log, text=True)
                with self._lock:
                    self._proc = proc
                if self._stop.is_set():
                    proc.terminate()
                for line in proc.stdout:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        event = {"ev": "output", "text": line}
                    event["run"] = self.runs
                    event["t"] = round(time.monotonic() - self._t0, 2)
                    with self._lock:
                        self.events.append(event)
                rc = proc.wait()
                with self._lock:
                    self.exits.append(rc)
                    self._proc = None
                self._stop.wait(self.restart_delay)

    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e.get("ev") == kind]

    def processed(self) -> set[tuple[int, int]]:
        """(partition, offset) of every record the application processed."""
        return {(e["p"], e["o"]) for e in self.of("processed")}

    def poison_seen(self) -> list[tuple[int, int]]:
        """Every time the application met a record it could not process."""
        return [(e.get("p", -1), e.get("o", -1)) for e in self.of("poison")]

    def kill_current(self) -> None:
        """SIGKILL the running process (the supervisor starts a new one)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def stop(self, timeout: float = 20.0) -> None:
        """Stops the application (SIGTERM: it closes its consumer) and the restarts."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(timeout)

    def summary(self) -> str:
        with self._lock:
            kinds: dict[str, int] = {}
            for e in self.events:
                kinds[e.get("ev", "?")] = kinds.get(e.get("ev", "?"), 0) + 1
            tail = [e for e in self.events if e.get("ev") != "processed"][-8:]
        return (f"app runs={self.runs} exits={self.exits[-10:]} events={kinds} "
                f"gave_up={self.gave_up}\nlast events: {tail}\n"
                f"app log tail:\n{_tail(self.log_path, 25)}")
