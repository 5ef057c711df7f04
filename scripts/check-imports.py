#!/usr/bin/env python3
"""Fails when the files of src/ import each other in a circle.

Reads the `crate::` and `super::` paths of every file (comments and in-file test modules
left out, test-only files under a `tests/` folder too), resolves each to the file that
defines the module it names, and looks for strongly connected components in that graph.

    scripts/check-imports.py            # exit 1 and the circles, or "no import circles"
    scripts/check-imports.py --folders  # the same one level up: folder to folder (report only)
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
IDENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|\{|\*)")


def modules() -> dict[tuple[str, ...], str]:
    """Module path → source text with comments and in-file test modules removed."""
    out = {}
    for path in SRC.rglob("*.rs"):
        rel = path.relative_to(SRC).with_suffix("").parts
        if "tests" in rel[:-1] or rel[-1] == "tests":
            continue
        if rel[-1] == "mod":
            rel = rel[:-1]
        if rel in (("lib",), ("main",)):
            continue
        text = re.sub(r"//[^\n]*", "", path.read_text())
        test_mod = re.search(r"#\[cfg\(test\)\]\s*(#\[path[^\]]*\]\s*)?mod \w+\s*[{;]", text)
        if test_mod:
            text = text[: test_mod.start()]
        out[tuple(rel)] = text
    return out


def use_paths(text: str, start: int) -> list[list[str]]:
    """The paths of a use-tree beginning at text[start:] (after `crate::` or `super::`)."""
    paths: list[list[str]] = []

    def tree(i: int, prefix: list[str]) -> int:
        m = IDENT.match(text, i)
        if not m:
            return i
        tok, i = m.group(1), m.end()
        if tok == "*":
            paths.append(prefix)
            return i
        if tok == "{":
            while True:
                i = tree(i, prefix)
                m2 = re.compile(r"\s*(,|\})").match(text, i)
                if not m2:
                    return i
                i = m2.end()
                if m2.group(1) == "}":
                    return i
                close = re.compile(r"\s*\}").match(text, i)
                if close:
                    return close.end()
        prefix = prefix + [tok]
        sep = re.compile(r"\s*::").match(text, i)
        if sep:
            return tree(sep.end(), prefix)
        paths.append(prefix)
        return i

    tree(start, [])
    return paths


def graph(mods: dict[tuple[str, ...], str]) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    def resolve(path: list[str]) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for k in mods:
            if tuple(path[: len(k)]) == k and len(k) > len(best):
                best = k
        return best

    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for mod, text in mods.items():
        deps = set()
        for m in re.finditer(r"\b(crate|super)::", text):
            for p in use_paths(text, m.end()):
                if m.group(1) == "crate":
                    full = p
                else:
                    base = list(mod[:-1])
                    while p and p[0] == "super":
                        base, p = base[:-1], p[1:]
                    full = base + p
                target = resolve(full)
                if target and target != mod:
                    deps.add(target)
        edges[mod] = deps
    return edges


def circles(edges: dict) -> list[list]:
    index: dict = {}
    low: dict = {}
    stack: list = []
    on: set = set()
    found: list = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    folders = "--folders" in sys.argv[1:]
    edges = graph(modules())
    if folders:
        up: dict = {}
        for a, ds in edges.items():
            up.setdefault(a[:1], set()).update(d[:1] for d in ds if d[:1] != a[:1])
        edges = up
    found = circles(edges)
    name = lambda m: "/".join(m) or "lib"  # noqa: E731
    for comp in found:
        members = set(comp)
        print(f"import circle of {len(comp)}:")
        for m in comp:
            print(f"  {name(m)} -> {', '.join(sorted(name(d) for d in edges[m] if d in members))}")
    if not found:
        print("no import circles" + (" between folders" if folders else " between files"))
    return 1 if found and not folders else 0


if __name__ == "__main__":
    sys.exit(main())
