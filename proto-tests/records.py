"""Test records that every client produces and checks the same way.

A record is compared as ``(partition, key, value, headers)``; values repeat text so the
compression codecs have something to squeeze.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@dataclass(frozen=True)
class Rec:
    """One record as a test sees it, whatever the client library."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    offset: int = -1

    def content(self) -> tuple:
        """Everything except the offset, for comparing what was sent with what arrived."""
        return (self.partition, self.key, self.value, self.headers)


def make_records(tag: str, n: int, partitions: int) -> list[Rec]:
    """``n`` records spread round-robin over ``partitions``, each with two headers."""
    out = []
    for i in range(n):
        value = f"{tag} value {i} ".encode() + b"lorem ipsum dolor sit amet " * (1 + i % 8)
        out.append(Rec(partition=i % partitions, key=f"{tag}-key-{i}".encode(), value=value,
                       headers=(("idx", str(i).encode()), ("tag", tag.encode()))))
    return out


def assert_same_records(sent: list[Rec], got: list[Rec]) -> None:
    """Every sent record arrived exactly once, with its key, value and headers."""
    want = Counter(r.content() for r in sent)
    have = Counter(r.content() for r in got)
    missing = want - have
    extra = have - want
    assert not missing and not extra, (
        f"{sum(missing.values())} records missing (first: {list(missing)[:2]}), "
        f"{sum(extra.values())} unexpected (first: {list(extra)[:2]})")


def assert_offsets_dense(got: list[Rec]) -> None:
    """Per partition, the offsets received are distinct and increase."""
    by_partition: dict[int, list[int]] = {}
    for r in got:
        by_partition.setdefault(r.partition, []).append(r.offset)
    for p, offsets in by_partition.items():
        assert offsets == sorted(offsets), f"partition {p}: offsets out of order"
        assert len(set(offsets)) == len(offsets), f"partition {p}: an offset came twice"
