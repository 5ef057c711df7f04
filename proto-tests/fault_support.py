"""Support for the fault tests (``test_faults_*.py``): a broker behind a TCP gate
(``tcp_gate.Gate``) so that requests can be held, connections reset and the broker "taken
down" with its storage intact, and the count every fault test ends with.

tansu advertises the gate's port, so every connection after bootstrap (the proxy's own
DLQ and state-topic connections, the tests' direct reads) goes through the gate.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness import free_port
from poison_support import (PoisonStack, Produced, quarantined, read_topic)
from tcp_gate import PRODUCE, Gate, Request

PROXY_CLIENT_ID = "quarantine"
"""The client id of the proxy's own connections (DLQ writes, state topic, metadata)."""


def fault_watch_yaml(write_timeout_ms: int | None = None, **detection) -> str:
    """A ``watch:`` section: detection keys, and the DLQ write timeout when given."""
    lines = ["watch:", "  enabled: true"]
    if detection:
        lines.append("  detection:")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in detection.items()]
    if write_timeout_ms is not None:
        lines += ["  dead_letter:", f"    write_timeout_ms: {write_timeout_ms}"]
    return "\n".join(lines) + "\n"


class GatedStack(PoisonStack):
    """A broker behind a gate and a watching proxy in front of the gate."""

    def __init__(self, workdir: Path, watch: str | None):
        super().__init__(workdir=workdir, watch=watch)
        self.gate_port = free_port()
        self.tansu.advertised_port = self.gate_port
        self.proxy.upstream = f"127.0.0.1:{self.gate_port}"
        self.gate: Gate | None = None

    def start(self) -> "GatedStack":
        self.tansu.start()
        self.gate = Gate(("127.0.0.1", self.gate_port), ("127.0.0.1", self.tansu.port))
        try:
            self.proxy.start()
        except BaseException:
            self.gate.close()
            self.tansu.stop()
            raise
        return self

    def stop(self) -> None:
        self.proxy.stop()
        if self.gate is not None:
            self.gate.close()
        self.tansu.stop()


def gated_fixture(tmp_path_factory, name: str, watch: str):
    """Body of a module-scoped ``stack`` fixture: a GatedStack."""
    import os

    import pytest
    if os.environ.get("PROTO_TESTS_VIA") == "direct":
        pytest.skip("PROTO_TESTS_VIA=direct: poison detection needs the proxy")
    s = GatedStack(workdir=tmp_path_factory.mktemp(name), watch=watch).start()
    try:
        yield s
    finally:
        s.stop()


def proxy_produce_to(suffix: str):
    """A gate rule: the proxy's own Produce requests to topics ending in ``suffix``."""
    def rule(req: Request) -> bool:
        return (req.api_key == PRODUCE and req.client_id == PROXY_CLIENT_ID
                and any(t.endswith(suffix) for t in req.topics))
    return rule


def proxy_state_decision(req: Request) -> bool:
    """A gate rule: the proxy's write of a quarantine decision to the state topic (not its
    search-state writes)."""
    return (req.api_key == PRODUCE and req.client_id == PROXY_CLIENT_ID
            and any(t == "__quarantine_state" for t in req.topics)
            and b'"action":"quarantine"' in req.frame)


def dlq_origins(bootstrap: str, dlq: str, at_least: int = 0) -> list[tuple[int, int]]:
    """(partition, offset) of the source of every record in ``dlq``, duplicates kept."""
    return [(int(r.header("__quarantine.partition") or -1),
             int(r.header("__quarantine.offset") or -1))
            for r in read_topic(bootstrap, dlq, at_least=at_least)]


def check_counted(name: str, stack: PoisonStack, topic: str, group: str,
                  produced: list[Produced], processed: set[tuple[int, int]],
                  poison: list[Produced], dead_letters: list[tuple[int, int]],
                  allow_duplicates: bool = False) -> dict:
    """The count every fault test ends with: produced = committed + dead-lettered, nothing
    lost, every poison record dead-lettered, nothing dead-lettered that is not poison, no
    record hidden from ``group`` that is not in the DLQ. ``dead_letters`` are the DLQ
    copies' origins (duplicates kept); a duplicate (the same record written twice, which
    at-least-once DLQ writes allow after some faults) fails unless ``allow_duplicates``.
    Prints one ``FAULT`` line with the figures and returns them."""
    all_at = {r.at for r in produced}
    poison_at = {p.at for p in poison}
    dlq_at = set(dead_letters)
    duplicates = sum(n - 1 for n in Counter(dead_letters).values())
    lost = all_at - processed - dlq_at
    figures = {"fault": name, "produced": len(all_at), "committed": len(processed & all_at),
               "dead_lettered": len(dlq_at), "duplicates": duplicates, "lost": len(lost)}
    print("FAULT " + json.dumps(figures))
    assert not lost, f"{name}: {len(lost)} records neither committed nor dead-lettered: {sorted(lost)[:10]}"
    assert dlq_at == poison_at, f"{name}: DLQ holds {sorted(dlq_at)}, poison is {sorted(poison_at)}"
    assert not (processed & poison_at), f"{name}: poison processed?! {processed & poison_at}"
    assert len(all_at) == len(processed & all_at) + len(dlq_at), f"{name}: {figures}"
    hidden = {(q["partition"], q["offset"]) for q in quarantined(stack.proxy)
              if q["group"] == group and q["topic"] == topic}
    assert hidden <= dlq_at, f"{name}: hidden but not in the DLQ: {sorted(hidden - dlq_at)}"
    if not allow_duplicates:
        assert duplicates == 0, f"{name}: {duplicates} duplicate dead letters: {dead_letters}"
    return figures
