"""Delta encoders on the store's real kind of data (issue 12): gitstate's own against dulwich's ``create_delta``.

Successive versions of a ~100 KB JSON document (2-space indent, as the JSON codec writes it), each changing one
key (``--changes`` keys per version), the way a store's flushes produce them. For each pair (previous version,
next version) both encoders make a Git delta; the total delta bytes and the time spent are reported, and each
delta is checked by applying it. A second row does the same for small trees-like binary data (the document cut to
2 KB), where fixed costs dominate.

Usage: ``python benchmarks/bench_delta.py [--versions N] [--changes K]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_size import make_document  # type: ignore[import-not-found]
from dulwich.pack import apply_delta, create_delta

__all__ = ["main"]


def _ours() -> Callable[[bytes, bytes], bytes]:
    try:
        from gitstate.gc.delta import make_delta
    except ImportError:  # the baseline, before gc became a package
        from gitstate.gc import _make_delta as make_delta  # type: ignore[attr-defined,no-redef]

    def enc(base: bytes, target: bytes) -> bytes:
        d = make_delta(base, target, 1 << 40)
        assert d is not None
        return d

    return enc


def _dulwich(base: bytes, target: bytes) -> bytes:
    return b"".join(create_delta(base, target))


def versions(n: int, changes: int, size: int) -> list[bytes]:
    """``n`` successive encodings of one document, each with ``changes`` values changed."""
    rnd = random.Random(20240606)
    doc = make_document(rnd, size)
    keys = list(doc)
    out = []
    for i in range(n):
        for _ in range(changes):
            doc[rnd.choice(keys)]["value"] = i
        out.append((json.dumps(doc, indent=2) + "\n").encode())
    return out


def measure(name: str, enc: Callable[[bytes, bytes], bytes], vs: list[bytes]) -> tuple[int, float]:
    """Total delta bytes and seconds for ``enc`` over successive pairs of ``vs`` (each delta verified)."""
    total, spent = 0, 0.0
    for a, b in itertools.pairwise(vs):
        t0 = time.perf_counter()
        d = enc(a, b)
        spent += time.perf_counter() - t0
        assert b"".join(apply_delta(a, d)) == b, name
        total += len(d)
    return total, spent


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one line per encoder and data set."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--versions", type=int, default=40)
    ap.add_argument("--changes", type=int, default=1)
    args = ap.parse_args(argv)
    ours = _ours()
    for label, size in (("100 KB JSON", 100_000), ("2 KB JSON", 2_000)):
        vs = versions(args.versions, args.changes, size)
        print(f"{label}: {len(vs) - 1} deltas, document {len(vs[-1])} bytes, {args.changes} change(s) per version")
        for name, enc in (("gitstate", ours), ("dulwich create_delta", _dulwich)):
            total, spent = measure(name, enc, vs)
            n = len(vs) - 1
            print(f"  {name:22s} {total / n:10.1f} bytes/delta  {spent / n * 1000:9.3f} ms/delta")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
