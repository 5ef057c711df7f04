"""`quarantine dlq replay` as a redrive an SRE can trust, against the real broker: a task
interrupted with SIGINT (and once killed outright) at random points and resumed until done
writes each selected record exactly once, in per-partition order; the group then consumes
them; a record that fails again after its replay is diverted again by the proxy and
refused by the next replay. Also the tools' edges: bad arguments exit 64 naming the flag,
`stats` refuses a topic that is not a DLQ, JSON output is data, `| head` ends quietly."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from apps.supervisor import start_app
from harness import quarantine_bin
from poison_support import (create_topic, diagnose, end_offsets, is_poison, order_items, produce,
                            read_topic, stack_fixture, wait_caught_up, wait_for)

GROUP = "billing"
TOKEN = "qt_redrive_token"
HARD_CRASH = {"session_timeout_ms": 2000, "max_poll_interval_ms": 2000, "heartbeat_ms": 500}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from stack_fixture(tmp_path_factory, "dlq-redrive", watch=None, admin_token=TOKEN)


def env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("QUARANTINE__")}


def dlq(stack, *args: str, timeout: float = 120, token: str | None = None
        ) -> subprocess.CompletedProcess:
    e = env()
    if token:
        e["QUARANTINE__ADMIN__TOKEN"] = token
    return subprocess.run([str(quarantine_bin()), "dlq", *args, "--bootstrap", stack.broker],
                          capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


def dead_letter(topic: str, partition: int, offset: int, group: str = GROUP,
                replays: int = 0, reason: str = "crash-loop") -> list:
    """The quarantine headers the proxy writes on a dead-letter record."""
    return [("__quarantine.group", group.encode()), ("__quarantine.topic", topic.encode()),
            ("__quarantine.partition", str(partition).encode()),
            ("__quarantine.offset", str(offset).encode()),
            ("__quarantine.reason", reason.encode()),
            ("__quarantine.diverted.ms", str(1_765_000_000_000 + offset).encode()),
            ("__quarantine.replay.count", str(replays).encode())]


def source_of(r) -> tuple[int, int] | None:
    v = r.header("__quarantine.replay.source")
    if v is None:
        return None
    _, p, o = v.rsplit("/", 2)
    return int(p), int(o)


@pytest.mark.timeout(600)
def test_interrupted_replay_resumes_to_exactly_once_in_order(stack, tmp_path):
    topic = create_topic(stack.broker, f"redrive-{uuid.uuid4().hex[:8]}", 3)
    dlq_topic = create_topic(stack.broker, topic + ".dlq", 3)
    # 3 DLQ partitions x 600 records from origin partitions 0..2; every 10th belongs to
    # another group, every 50th has been replayed 3 times already.
    items, selected = [], defaultdict(list)
    for p in range(3):
        for i in range(600):
            group = "other" if i % 10 == 3 else GROUP
            replays = 3 if i % 50 == 7 else 0
            items.append((p, f"k{p}-{i}".encode(), json.dumps({"p": p, "i": i}).encode(),
                          dead_letter(topic, p, 1000 + i, group, replays)))
    produced = produce(stack.broker, dlq_topic, items, **{"linger.ms": 20})
    for r, (p, _, _, headers) in zip(produced, items):
        h = dict(headers)
        if h["__quarantine.group"] == GROUP.encode() and h["__quarantine.replay.count"] == b"0":
            selected[r.partition].append(r.offset)
    assert sum(map(len, selected.values())) == 3 * (600 - 60 - 12)

    # --rate is an option of the run, not of the task: each run names it.
    base = ["replay", dlq_topic, "--progress", "lines", "--json", "--rate", "400"]
    scope = ["--group", GROUP]
    rng = random.Random(12)
    task, runs, interrupted, killed = None, 0, 0, False
    while True:
        args = base + (["--resume", task] if task else scope)
        proc = subprocess.Popen([str(quarantine_bin()), "dlq", *args, "--bootstrap", stack.broker],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env(), stdin=subprocess.DEVNULL)
        runs += 1
        assert runs < 40, "the task never finished"
        time.sleep(rng.uniform(0.5, 2.0))
        if task and not killed and runs == 3:
            # Once killed outright: whatever it wrote without a checkpoint is settled by the
            # next run, never written again.
            proc.kill()
            proc.communicate(timeout=60)
            killed = True
            continue
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGINT and not out:
            continue  # interrupted before its handler was installed: like a kill
        report = json.loads(out.strip().splitlines()[-1])
        if report["state"] == "done":
            assert proc.returncode == 0, (out, err)
            break
        assert proc.returncode == 130, (proc.returncode, out, err)
        assert report["state"] == "interrupted", report
        assert report["resume"] == f"quarantine dlq replay {dlq_topic} --resume {report['task']}"
        assert "stopping after the chunk" in err, err
        interrupted += 1
        task = report["task"]
    assert interrupted >= 2 and killed, (interrupted, runs)

    want = sum(map(len, selected.values()))
    back = read_topic(stack.broker, topic, at_least=want, settle=2.0)
    got = defaultdict(list)
    for r in back:
        src = source_of(r)
        assert src is not None, r
        got[r.partition].append((r.offset, src))
    # Exactly once: every selected DLQ record, no other, none twice.
    sources = [s for rs in got.values() for _, s in rs]
    assert len(sources) == want == len(back), (len(sources), want, len(back))
    assert sorted(sources) == sorted((p, o) for p, os_ in selected.items() for o in os_)
    # Per-partition order: each origin partition gets its DLQ partition's records in order.
    for p, rs in got.items():
        dlq_offsets = [o for _, (dp, o) in sorted(rs)]
        assert all(dp == p for _, (dp, _) in rs)
        assert dlq_offsets == sorted(dlq_offsets), f"partition {p} out of order"

    # A new task over the same scope writes nothing; the refused and other-group records
    # stay open.
    again = dlq(stack, "replay", dlq_topic, "--group", GROUP, "--json", "--progress", "none")
    r = json.loads(again.stdout)
    assert again.returncode == 0 and r["replayed"] == 0, again
    assert r["skipped"]["already_replayed"] == want and r["skipped"]["refused"] == 36, r
    stats = json.loads(dlq(stack, "stats", dlq_topic, "--json").stdout)
    assert stats["by_status"] == {"open": 1800 - want, "replayed": want, "discarded": 0}, stats
    tasks = [json.loads(line) for line in dlq(stack, "tasks", dlq_topic, "--json").stdout.splitlines()]
    mine = [t for t in tasks if t["task"] == task]
    assert len(mine) == 1 and mine[0]["state"] == "done" and not mine[0]["in_doubt"], tasks
    assert sum(t["replayed"] for t in tasks) == want, tasks
    table = dlq(stack, "tasks", dlq_topic)
    assert table.stdout.startswith("TASK") and task in table.stdout, table

    # The group consumes them all.
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 20, "session.timeout.ms": 6000})
    c.subscribe([topic])
    consumed = set()
    deadline = time.monotonic() + 120
    try:
        while len(consumed) < want:
            assert time.monotonic() < deadline, f"consumed {len(consumed)} of {want}"
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            consumed.add((m.partition(), m.offset()))
            c.commit(m, asynchronous=False)
    finally:
        c.close()
    assert consumed == {(r.partition, r.offset) for r in back}


@pytest.mark.timeout(420)
def test_a_record_failing_again_after_replay_is_diverted_again_and_refused(stack, tmp_path):
    topic = create_topic(stack.bootstrap, f"refail-{uuid.uuid4().hex[:8]}", 1)
    produced = produce(stack.bootstrap, topic, order_items(1, 60, poison={(0, 20)}))
    group = topic + ".g"
    app = start_app(stack, "rdkafka", tmp_path, "app", topic=topic, group=group, mode="crash",
                    commit="each", **HARD_CRASH)
    try:
        wait_caught_up(stack, group, topic, end_offsets(produced, 1), 300, diagnose(stack, app, token=TOKEN))
        dlq_topic = topic + ".dlq"
        assert len(read_topic(stack.broker, dlq_topic, at_least=1)) == 1
        hidden = [q["offset"] for q in json.loads(state(stack, "list", "--json").stdout)
                  if q["group"] == group]
        assert hidden == [20], hidden
        # --release: the group committed past offset 20, so its quarantine entry is stale.
        run = dlq(stack, "replay", dlq_topic, "--group", group, "--max-replays", "1",
                  "--json", "--progress", "none", "--release", "--admin",
                  stack.proxy.admin_url, token=TOKEN)
        first = json.loads(run.stdout)
        assert run.returncode == 0 and first["replayed"] == 1, run
        assert first["release"] == {"released": 1, "kept_not_committed": 0}, first
        (target,) = first["targets"]
        # Good records behind it, so the group has something to commit past it.
        more = produce(stack.bootstrap, topic, order_items(1, 5))
        # The app still cannot process it: the proxy diverts the replayed copy again.
        wait_for(lambda: len(read_topic(stack.broker, dlq_topic, settle=3.0)) == 2, 240,
                 "the replayed record to be diverted again", diagnose(stack, app, token=TOKEN))
        wait_caught_up(stack, group, topic, end_offsets(more, 1), 240, diagnose(stack, app, token=TOKEN))
    finally:
        app.stop()
    letters = read_topic(stack.broker, dlq_topic, at_least=2)
    assert [r.header("__quarantine.replay.count") for r in letters] == ["0", "1"]
    assert letters[1].header("__quarantine.offset") == str(target["last_offset"])
    run = dlq(stack, "replay", dlq_topic, "--group", group, "--max-replays", "1", "--json",
              "--progress", "none")
    second = json.loads(run.stdout)
    assert run.returncode == 0, run
    assert (second["replayed"], second["skipped"]["refused"],
            second["skipped"]["already_replayed"]) == (0, 1, 1), second
    back = [r for r in read_topic(stack.broker, topic, at_least=66) if source_of(r)]
    assert len(back) == 1, "the refused record was not written again"
    # The re-diverted copy is hidden now; the released original is not.
    hidden = [q["offset"] for q in json.loads(state(stack, "list", "--json").stdout)
              if q["group"] == group]
    assert hidden == [target["last_offset"]], hidden
    text = dlq(stack, "inspect", dlq_topic, "--status", "replayed")
    assert text.returncode == 0 and "status:  replayed by" in text.stdout, text
    assert text.stdout.rstrip().endswith("1 record(s)"), text.stdout


@pytest.fixture(scope="module")
def small_dlq(stack):
    topic = create_topic(stack.broker, f"edges-{uuid.uuid4().hex[:8]}", 2)
    dlq_topic = create_topic(stack.broker, topic + ".dlq", 2)
    big = b"x" * 10_000
    items = [(0, b"k0", json.dumps({"order": 1, "note": "a"}).encode(), dead_letter(topic, 0, 5)),
             (0, b"\x00\xff", b"\x00\x01binary", dead_letter(topic, 0, 6, reason="check")),
             (1, b"big", big, dead_letter(topic, 1, 7))]
    items += [(1, f"m{i}".encode(), b"{}", dead_letter(topic, 1, 100 + i)) for i in range(200)]
    produce(stack.broker, dlq_topic, items)
    return topic, dlq_topic


@pytest.mark.parametrize("args, flag", [
    (["inspect", "{dlq}", "--limit", "abc"], "--limit"),
    (["inspect", "{dlq}", "--partition", "9"], "--partition"),
    (["stats", "{dlq}", "--partition", "9"], "--partition"),
    (["replay", "{dlq}", "--reason", "bogus"], "--reason"),
    (["replay", "{dlq}", "--diverted-after", "yesterday"], "--diverted-after"),
    (["replay", "{dlq}", "--from-offset", "9", "--to-offset", "3"], "--to-offset"),
    (["replay", "{dlq}", "--rate", "0"], "--rate"),
    (["discard", "{dlq}"], "--all"),
])
def test_bad_arguments_exit_64_naming_the_flag(stack, small_dlq, args, flag):
    _, dlq_topic = small_dlq
    run = dlq(stack, *[a.replace("{dlq}", dlq_topic) for a in args])
    assert run.returncode == 64, (run.returncode, run.stderr)
    assert flag in run.stderr, run.stderr


def test_stats_on_a_topic_that_is_not_a_dlq_says_so(stack):
    topic = create_topic(stack.broker, f"plain-{uuid.uuid4().hex[:8]}", 1)
    produce(stack.broker, topic, [(0, b"k", b"v", [])])
    run = dlq(stack, "stats", topic)
    assert run.returncode != 0 and "not a dead-letter topic" in run.stderr, run


def test_json_is_data_and_nothing_is_cut(stack, small_dlq):
    _, dlq_topic = small_dlq
    run = dlq(stack, "inspect", dlq_topic, "--json", "--show-payload", "--to-offset", "1")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    by_origin = {r["origin"]["offset"]: r for r in rows}
    assert by_origin[5]["value"] == {"order": 1, "note": "a"}
    assert by_origin[5]["value_encoding"] == "json"
    assert by_origin[6]["value_encoding"] == "base64"
    assert by_origin[6]["value"] == "AAFiaW5hcnk="
    assert by_origin[6]["key"] == "AP8="
    assert base64.b64decode(by_origin[7]["value"]) == b"x" * 10_000
    assert by_origin[5]["status"] == {"status": "open"}


def test_summary_dry_run_and_fair_limit(stack, small_dlq):
    topic, dlq_topic = small_dlq
    run = dlq(stack, "replay", dlq_topic, "--dry-run", "--limit", "10", "--progress", "none")
    assert run.returncode == 0, run.stderr
    assert "would replay 10 record(s) to 2 partition(s)" in run.stdout, run.stdout
    assert "dry run: nothing was written" in run.stdout
    assert len(run.stdout.splitlines()) < 8, "a summary, not a line per record"
    # --limit is shared: both DLQ partitions get their turn (partition 0 has only 2).
    listed = dlq(stack, "replay", dlq_topic, "--dry-run", "--limit", "4", "--list",
                 "--progress", "none")
    parts = re.findall(r"would replay \S+\[(\d)\]@\d+ ->", listed.stdout)
    assert sorted(parts) == ["0", "0", "1", "1"], listed.stdout
    assert read_topic(stack.broker, topic) == [], "a dry run writes nothing"


def test_a_closed_pipe_ends_quietly(stack, small_dlq):
    _, dlq_topic = small_dlq
    cmd = (f"'{quarantine_bin()}' dlq inspect {dlq_topic} --bootstrap {stack.broker} | head -2;"
           " exit ${PIPESTATUS[0]}")
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60,
                         env=env(), stdin=subprocess.DEVNULL)
    assert run.returncode == 0, (run.returncode, run.stderr)
    assert "panic" not in run.stderr, run.stderr
    assert len(run.stdout.splitlines()) == 2


def test_discard_marks_records_handled_and_replay_leaves_them(stack, small_dlq):
    topic, dlq_topic = small_dlq
    run = dlq(stack, "discard", dlq_topic, "--reason", "check", "--note", "bad data, fixed upstream",
              "--by", "oncall")
    assert run.returncode == 0 and "discarded 1 record(s)" in run.stdout, run
    shown = dlq(stack, "inspect", dlq_topic, "--reason", "check")
    assert "status:  discarded by oncall" in shown.stdout and "bad data" in shown.stdout, shown
    run = dlq(stack, "replay", dlq_topic, "--reason", "check", "--json", "--progress", "none")
    r = json.loads(run.stdout)
    assert (r["replayed"], r["skipped"]["discarded"]) == (0, 1), r
    stats = json.loads(dlq(stack, "stats", dlq_topic, "--json").stdout)
    assert stats["by_status"]["discarded"] == 1, stats


def state(stack, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    e = env()
    if token:
        e["QUARANTINE__ADMIN__TOKEN"] = token
    return subprocess.run([str(quarantine_bin()), "state", *args, "--admin",
                           stack.proxy.admin_url], capture_output=True, text=True, timeout=60,
                          env=e, stdin=subprocess.DEVNULL)


def test_state_cli_lists_quarantines_and_releases_with_the_token(stack):
    topic = create_topic(stack.bootstrap, f"state-{uuid.uuid4().hex[:8]}", 1)
    produce(stack.bootstrap, topic, order_items(1, 3))
    group = topic + ".g"
    where = ["--group", group, "--topic", topic, "--partition", "0", "--offset", "1"]
    denied = state(stack, "quarantine", *where, token=None)
    assert denied.returncode == 1 and "401" in denied.stderr, denied
    run = state(stack, "quarantine", *where, "--reason", "bad coupon")
    assert run.returncode == 0 and f"quarantined {topic}[0]@1 for group {group}" in run.stdout, run
    listed = json.loads(state(stack, "list", "--group", group, "--json").stdout)
    assert [(q["topic"], q["partition"], q["offset"]) for q in listed] == [(topic, 0, 1)], listed
    assert listed[0]["dlq"] and listed[0]["dlq"][0] == topic + ".dlq", listed
    table = state(stack, "list", "--topic", topic)
    assert table.stdout.startswith("GROUP") and group in table.stdout, table
    assert f"{topic}.dlq[0]@0" in table.stdout, table.stdout
    run = state(stack, "release", *where)
    assert run.returncode == 0 and "released" in run.stdout, run
    assert state(stack, "list", "--group", group).stdout == "no record is quarantined\n"
    again = state(stack, "release", *where, "--json")
    assert json.loads(again.stdout) == {"released": False}, again
    bad = state(stack, "release", "--group", group, "--topic", topic, "--partition", "x",
                "--offset", "1")
    assert bad.returncode == 64 and "--partition" in bad.stderr, bad


def test_wait_confirms_the_group_committed_past_the_replayed_records(stack):
    topic = create_topic(stack.broker, f"wait-{uuid.uuid4().hex[:8]}", 2)
    dlq_topic = create_topic(stack.broker, topic + ".dlq", 2)
    group = topic + ".g"
    produce(stack.broker, dlq_topic, [(p, b"k", b"{}", dead_letter(topic, p, 10 + i, group))
                                      for p in range(2) for i in range(3)])
    # Nobody consumes: the wait ends unconfirmed, exit 1, the replay itself is done.
    run = dlq(stack, "replay", dlq_topic, "--partition", "0", "--wait", "--wait-timeout", "3",
              "--json", "--progress", "none")
    r = json.loads(run.stdout)
    assert run.returncode == 1 and r["state"] == "done" and r["replayed"] == 3, run
    assert r["wait"] == {"confirmed": False, "pending": [
        {"group": group, "topic": topic, "partition": 0, "commit_wanted": 3}]}, r
    # The group consumes and commits as it goes: confirmed.
    done = threading.Event()

    def consume():
        c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 20, "session.timeout.ms": 6000})
        c.subscribe([topic])
        try:
            while not done.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    c.commit(m, asynchronous=False)
        finally:
            c.close()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        run = dlq(stack, "replay", dlq_topic, "--partition", "1", "--wait", "--wait-timeout",
                  "120", "--progress", "none")
    finally:
        done.set()
        t.join(30)
    assert run.returncode == 0, run
    assert "confirmed: every group has committed past the records replayed to it" in run.stdout
