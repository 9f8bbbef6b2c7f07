"""Core benchmarks: gitstate's write path next to the seed way of persisting state and next to real git.

Run: ``python benchmarks/bench_core.py [--quick]`` (``--quick`` finishes in well under a minute).

Measured side by side in one run, medians, printed as Markdown tables:

1. ``set()`` of one key in a 100 KB JSON document, next to the seed way (write the whole JSON to a temp file,
   fsync, rename). Target: >= 100x faster.
2. One flush of one changed document in stores of 10, 1,000 and 10,000 files (nested: directories of 100
   files of ~200 B), next to ``git add -A && git commit -q`` on a copy of the same repository. Targets: >= 10x
   faster at 10,000 files, and the flush at 10,000 files within 2x of the flush at 10.
3. ``immediate`` durability: one commit of a 1 KB document, next to the fsync+rename write of the same bytes.
4. Memory: resident size (RSS) of a process holding a store of 10,000 documents, each read once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gitstate

__all__ = ["main"]

logger = logging.getLogger("gitstate.bench")

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


# ----------------------------------------------------------------------------- helpers
Case = tuple[Callable[[], Any], Callable[[], Any] | None, int]


def interleaved_ms(cases: dict[str, Case], repeat: int) -> dict[str, float]:
    """Median ms per call of each case, run round-robin so that machine load hits every case alike.

    ``cases`` maps a name to ``(fn, setup, batch)``: ``setup()`` runs untimed before each timed batch of
    ``batch`` calls of ``fn()``; the figure is per call.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (fn, setup, batch) in cases.items():
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            times[name].append((time.perf_counter() - t0) * 1000 / batch)
    return {name: statistics.median(v) for name, v in times.items()}


def seed_write(path: Path, value: Any) -> None:
    """The seed way: the whole document as JSON to a temp file, fsync, rename over the target."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fmt_ms(ms: float) -> str:
    if ms < 0.01:
        return f"{ms * 1000:.2f} µs"
    if ms < 1:
        return f"{ms * 1000:.1f} µs"
    return f"{ms:.2f} ms"


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def document(size_bytes: int) -> dict[str, Any]:
    """A JSON-like document of about ``size_bytes`` when encoded."""
    doc: dict[str, Any] = {}
    i = 0
    while len(json.dumps(doc, indent=2)) < size_bytes:
        doc[f"item_{i:05d}"] = {"status": "todo", "owner": f"user{i % 17}", "tags": ["a", "b"], "n": i}
        i += 1
    return doc


def _seed_case(target: Path, value: dict[str, Any], key: str) -> Case:
    def change() -> None:
        value[key]["status"] = f"seed-{time.perf_counter_ns()}"

    return (lambda: seed_write(target, value), change, 1)


# ----------------------------------------------------------------------------- 1. set() vs seed write
def bench_set(tmp: Path, quick: bool) -> tuple[list[str], dict[str, float]]:
    value = document(100_000)
    store = gitstate.open(
        tmp / "set-store", durability="debounced", debounce_ms=600_000, max_delay_ms=600_000, auto_pack=False
    )
    try:
        store.set("state.json", None, value)
        store.flush()
        store.get("state.json", "item_00000")  # loaded, as in a running program
        counter = [0]

        def one_set() -> None:
            counter[0] += 1
            store.set("state.json", "item_00042.status", f"done-{counter[0]}")

        m = interleaved_ms(
            {"set": (one_set, None, 50), "seed": _seed_case(tmp / "seed.json", value, "item_00042")},
            20 if quick else 60,
        )
        store.flush()
    finally:
        store.close()
    ratio = m["seed"] / m["set"]
    row = [
        "set() one key, 100 KB JSON document",
        fmt_ms(m["set"]),
        fmt_ms(m["seed"]),
        f"{ratio:,.0f}x",
        "≥ 100x",
        "yes" if ratio >= 100 else "NO",
    ]
    return row, {"set_ms": m["set"], "seed_ms": m["seed"]}


# ----------------------------------------------------------------------------- 2. flush vs git add+commit
def build_store(path: Path, n_files: int) -> list[str]:
    """A store of ``n_files`` documents of ~200 B in directories of 100, built through the library."""
    docs = [f"d{i // 100:03d}/f{i % 100:02d}.json" for i in range(n_files)]
    with gitstate.open(path, durability="manual", fsync=False, auto_pack=False) as s:
        for i, d in enumerate(docs):
            s.set(
                d,
                None,
                {
                    "id": i,
                    "name": f"document {i}",
                    "status": "todo",
                    "owner": "someone",
                    "tags": ["a", "b"],
                    "note": "x" * 60,
                },
            )
        s.flush("build")
    return docs


def _flush_case(store: gitstate.Store, doc: str) -> Case:
    counter = [0]

    def change() -> None:
        counter[0] += 1
        store.set(doc, "status", f"lib-{counter[0]}")

    return (store.flush, change, 1)


def _git_case(repo: Path, doc: str, *, fsync: bool = False) -> Case:
    """Change one file, then ``git add -A && git commit -q`` (only the commit is timed). With ``fsync``, git is
    told to fsync everything it writes (``core.fsync=all``), like gitstate does by default."""
    cfg = "-c core.fsync=all -c core.fsyncMethod=fsync " if fsync else ""
    target = repo / doc
    counter = [0]

    def change() -> None:
        counter[0] += 1
        value = json.loads(target.read_text())
        value["status"] = f"git-{fsync}-{counter[0]}"
        target.write_text(json.dumps(value, indent=2) + "\n")

    def commit() -> None:
        subprocess.run(
            ["sh", "-c", f"git {cfg}add -A && git {cfg}commit -q -m change"], cwd=repo, env=GIT_ENV, check=True
        )

    return (commit, change, 1)


def bench_flush(tmp: Path, quick: bool) -> tuple[list[list[str]], dict[int, dict[str, float]]]:
    results: dict[int, dict[str, float]] = {}
    for n_files in (10, 1_000, 10_000):
        path = tmp / f"store-{n_files}"
        docs = build_store(path, n_files)
        copy = tmp / f"git-{n_files}"
        subprocess.run(["cp", "-a", str(path), str(copy)], check=True)
        subprocess.run(["git", "add", "-A"], cwd=copy, env=GIT_ENV, check=True)  # warm the index's stat data
        doc = docs[len(docs) // 2]
        on = gitstate.open(path, durability="manual", fsync=True, auto_pack=False)
        off = gitstate.open(path, durability="manual", fsync=False, auto_pack=False)
        try:
            results[n_files] = interleaved_ms(
                {
                    "fsync": _flush_case(on, doc),
                    "nofsync": _flush_case(off, doc),
                    "git": _git_case(copy, doc),
                    "git_fsync": _git_case(copy, doc, fsync=True),
                },
                15 if quick else 40,
            )
        finally:
            on.close()
            off.close()
        shutil.rmtree(copy, ignore_errors=True)
    rows = [
        [
            f"{n:,}",
            fmt_ms(r["fsync"]),
            fmt_ms(r["nofsync"]),
            fmt_ms(r["git"]),
            fmt_ms(r["git_fsync"]),
            f"{r['git'] / r['nofsync']:.1f}x",
            f"{r['git_fsync'] / r['fsync']:.1f}x",
            f"{r['git'] / r['fsync']:.1f}x",
        ]
        for n, r in results.items()
    ]
    return rows, results


# ----------------------------------------------------------------------------- 3. immediate mode
def bench_immediate(tmp: Path, quick: bool) -> tuple[list[str], dict[str, float]]:
    value = document(1_000)
    store = gitstate.open(tmp / "immediate-store", durability="immediate", fsync=True, auto_pack=False)
    try:
        store.set("small.json", None, value)
        counter = [0]

        def one() -> None:
            counter[0] += 1
            store.set("small.json", "item_00001.status", f"v{counter[0]}")

        m = interleaved_ms(
            {"imm": (one, None, 1), "seed": _seed_case(tmp / "seed-1k.json", value, "item_00001")},
            30 if quick else 100,
        )
    finally:
        store.close()
    row = [
        "immediate: set() = one commit, 1 KB JSON",
        fmt_ms(m["imm"]),
        fmt_ms(m["seed"]),
        f"{m['seed'] / m['imm']:.2f}x",
        "report",
        "-",
    ]
    return row, {"immediate_ms": m["imm"], "seed_1k_ms": m["seed"]}


# ----------------------------------------------------------------------------- 4. memory
_MEMORY_CHILD = r"""
import sys, json
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
import gitstate
before = rss_kb()
s = gitstate.open(sys.argv[1], durability="manual", fsync=False)
opened = rss_kb()
docs = s.docs()
for d in docs:
    s.get(d)
loaded = rss_kb()
s.close()
print(json.dumps({"docs": len(docs), "before_kb": before, "opened_kb": opened, "loaded_kb": loaded}))
"""


def bench_memory(tmp: Path) -> tuple[list[str], dict[str, Any]]:
    path = tmp / "store-10000"
    if not path.exists():
        build_store(path, 10_000)
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path)], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    delta_mb = (m["loaded_kb"] - m["before_kb"]) / 1024
    open_mb = (m["opened_kb"] - m["before_kb"]) / 1024
    row = [
        f"{m['docs']:,} documents, each read once",
        f"{open_mb:.1f} MB",
        f"{delta_mb:.1f} MB",
        f"{delta_mb * 1024 * 1024 / max(1, m['docs']):,.0f} B",
        f"{m['loaded_kb'] / 1024:.1f} MB",
    ]
    return row, m


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 60 s)")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="gitstate-bench-"))
    raw: dict[str, Any] = {}
    try:
        set_row, raw["set"] = bench_set(tmp, args.quick)
        imm_row, raw["immediate"] = bench_immediate(tmp, args.quick)
        flush_rows, raw["flush"] = bench_flush(tmp, args.quick)
        mem_row, raw["memory"] = bench_memory(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"## gitstate core benchmarks{' (--quick)' if args.quick else ''}\n")
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, git "
        f"{subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}; "
        "medians.\n"
    )
    print(
        table(
            ["operation", "gitstate", "seed way (write JSON, fsync, rename)", "speed-up", "target", "met"],
            [set_row, imm_row],
        )
    )
    print()
    f = raw["flush"]
    ok_10x = f[10_000]["git"] / f[10_000]["nofsync"] >= 10
    ok_10x_durable = f[10_000]["git_fsync"] / f[10_000]["fsync"] >= 10
    ok_flat = f[10_000]["nofsync"] <= 2 * f[10]["nofsync"]
    ok_flat_durable = f[10_000]["fsync"] <= 2 * f[10]["fsync"]
    print(
        table(
            [
                "files in store",
                "flush, fsync on",
                "flush, fsync off",
                "git add -A && git commit -q",
                "same, core.fsync=all",
                "speed-up, git defaults vs fsync off",
                "speed-up, both fsync",
                "speed-up, git defaults vs fsync on",
            ],
            flush_rows,
        )
    )
    print()
    big, small = f[10_000], f[10]
    print(
        f"- >= 10x faster than git add+commit at 10,000 files: like for like (no fsync either side) "
        f"{'yes' if ok_10x else 'NO'} ({big['git'] / big['nofsync']:.1f}x); both fsyncing "
        f"{'yes' if ok_10x_durable else 'NO'} ({big['git_fsync'] / big['fsync']:.1f}x)"
    )
    print(
        f"- flush at 10,000 files within 2x of the flush at 10: fsync off {'yes' if ok_flat else 'NO'} "
        f"({big['nofsync'] / small['nofsync']:.2f}x); fsync on {'yes' if ok_flat_durable else 'NO'} "
        f"({big['fsync'] / small['fsync']:.2f}x)"
    )
    print(
        "- git's defaults fsync no loose object, ref or index; gitstate (fsync=True, the default) fsyncs the "
        "work-tree file, every object, the ref and their directories.\n"
    )
    print(table(["memory", "RSS after open", "RSS delta, all loaded", "per document", "process RSS"], [mem_row]))
    print(f"\n_{time.perf_counter() - t0:.0f} s in all._")
    if args.json:
        print("\n```json\n" + json.dumps(raw, indent=2, default=str) + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
