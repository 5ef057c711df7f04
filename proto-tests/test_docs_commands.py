"""Every `quarantine ...` command the docs show names a subcommand and flags the binary
has: the commands are extracted from README.md, docs/ and deploy/**/README.md (code blocks
and inline code, `q` being the runbook's alias for `quarantine ... --config FILE`) and
checked against `--help`. A flag quoted on its own (`--to`) must exist in some
subcommand."""

from __future__ import annotations

import functools
import re
import subprocess

import pytest

from harness import REPO_ROOT, quarantine_bin

DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md"),
               *(REPO_ROOT / "deploy").glob("**/README.md")])
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

# Flags of the project's other tools that the docs quote on their own, with the file that
# defines them (checked too); a flag of the broker is named by its tool.
OTHER_TOOLS = {
    "--session-ms": "benches/failover.py",
    "--failover": "benches/detection.py",
    "--check": "deploy/monitoring/build.py",
    "--authentication": None,  # tansu's broker flag (README: SASL on tansu)
}


@functools.cache
def help_text(path: tuple[str, ...]) -> str | None:
    out = subprocess.run([str(quarantine_bin()), *path, "--help"], capture_output=True,
                         text=True, timeout=30)
    return out.stdout if out.returncode == 0 else None


def subcommands(path: tuple[str, ...]) -> list[str]:
    text = help_text(path) or ""
    if "Commands:" not in text:
        return []
    block = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines()
            if line.strip() and not line.strip().startswith("help")]


def all_paths(path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for sub in subcommands(path):
        out += all_paths(path + (sub,))
    return out


def flags_of(path: tuple[str, ...]) -> set[str]:
    return set(FLAG.findall(help_text(path) or "")) | {"--help", "--version"}


def snippets(text: str) -> list[str]:
    """Code block lines (backslash continuations joined) and inline code spans."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        out += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    out += re.findall(r"`([^`\n]+)`", prose.replace("`\n", "` "))
    return [s.replace("\\|", "|") for s in out]


def commands_in(snippet: str) -> list[list[str]]:
    """Token lists after each `quarantine` / `q` that starts a command."""
    found = []
    for m in re.finditer(r"(?:^|[\s;(&|$])(?:quarantine|q)\s+([a-z][a-z-]*(?:\|[a-z-]+)*)(.*)",
                         snippet):
        rest = re.split(r"[|;&]\s|\s#\s|\)", m.group(2))[0]
        found.append([m.group(1), *rest.split()])
    return found


def cases():
    for doc in DOCS:
        text = doc.read_text()
        for snippet in snippets(text):
            yield doc.relative_to(REPO_ROOT).as_posix(), snippet


def test_every_documented_command_and_flag_exists():
    top = set(subcommands(()))
    assert {"run", "check-config", "dlq", "guard", "searches", "inject"} <= top, top
    every_flag = set().union(*(flags_of(p) for p in all_paths()))
    problems, checked = [], 0
    for where, snippet in cases():
        if re.fullmatch(r"(--[a-z][a-z0-9-]*)( [A-Z_.]+| \S+)?", snippet.strip()):
            flag = snippet.split()[0]
            checked += 1
            if flag in OTHER_TOOLS:
                source = OTHER_TOOLS[flag]
                if source and f'"{flag}"' not in (REPO_ROOT / source).read_text():
                    problems.append(f"{where}: `{snippet}`: {source} has no {flag}")
            elif flag not in every_flag:
                problems.append(f"{where}: `{snippet}`: no subcommand has {flag}")
            continue
        for tokens in commands_in(snippet):
            head, rest = tokens[0], tokens[1:]
            if not any(h in top for h in head.split("|")):
                continue  # prose: "quarantine sees the group ..."
            paths = []
            for h in head.split("|"):
                if h not in top:
                    problems.append(f"{where}: `{snippet}`: no subcommand {h}")
                    continue
                subs = subcommands((h,))
                nxt = rest[0] if rest else ""
                if subs and re.fullmatch(r"[a-z][a-z|-]*", nxt):
                    for s in nxt.split("|"):
                        if s not in subs:
                            problems.append(f"{where}: `{snippet}`: no subcommand {h} {s}")
                        else:
                            paths.append((h, s))
                elif subs:  # `quarantine dlq ... --config`: any of its subcommands
                    paths += [(h, s) for s in subs]
                else:
                    paths.append((h,))
            if not paths:
                continue
            known = set().union(*(flags_of(p) for p in paths))
            for flag in FLAG.findall(" ".join(rest)):
                checked += 1
                if flag not in known:
                    problems.append(f"{where}: `{snippet}`: {' '.join(paths[0])} has no {flag}")
    assert checked > 40, f"only {checked} flags found: the extraction is broken"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("snippet, tokens", [
    ("q dlq stats order.confirmed.dlq --json", [["dlq", "stats", "order.confirmed.dlq", "--json"]]),
    ("kubectl exec -c quarantine -- quarantine check-config /etc/q.yaml",
     [["check-config", "/etc/q.yaml"]]),
    ("quarantine guard status|rearm --group G --admin", [["guard", "status|rearm", "--group", "G",
                                                          "--admin"]]),
    ("quarantine sees the group re-fetch", [["sees", "the", "group", "re-fetch"]]),
])
def test_extraction(snippet, tokens):
    assert commands_in(snippet) == tokens


def test_a_wrong_flag_would_be_found(tmp_path):
    """The check itself: the runbook's old `--target-topic` is caught."""
    every_flag = set().union(*(flags_of(p) for p in all_paths()))
    assert "--to" in every_flag and "--target-topic" not in every_flag
    assert "--ttl" not in flags_of(("dlq", "replay"))
