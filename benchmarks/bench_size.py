"""Repository size and flush latency with background packing (issue 6: bounded size).

One run, side by side:

* **Size.** A store takes N flushes (10,000; ``--quick``: 800) that each change one key of a ~100 KB JSON
  document, with the background packer wired the way ``gitstate.open()`` wires it. The size of ``.git`` is then
  compared with what real ``git gc`` reaches on a copy of the same repository, and with ``gitstate gc`` (pure
  Python) on another copy. Target: gitstate's ``.git`` at most 2x git's, without calling git.
* **Latency.** On the same store, rounds of a block of flushes without the packer then a block with it (each
  block with it starts with the backlog of the block before, so packing passes run during it). The medians are
  compared, and the flushes that ran while a pass was at work are reported apart. Alternating blocks keep the
  comparison fair on a machine whose disk speed drifts. Target: the packer adds at most 5 ms to the median.

Usage: ``python benchmarks/bench_size.py [--quick] [--flushes N] [--rounds R] [--block B] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gitstate
from gitstate import gc

__all__ = ["main"]

logger = logging.getLogger("gitstate.bench")

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
]


def make_document(rnd: random.Random, target_bytes: int = 100_000) -> dict[str, Any]:
    """A ~100 KB JSON document shaped like agent state: records with ids, numbers, words and flags."""
    doc: dict[str, Any] = {}
    i = 0
    while len(json.dumps(doc, indent=2)) < target_bytes:
        for _ in range(50):
            doc[f"item{i:05d}"] = {
                "id": rnd.getrandbits(96).to_bytes(12, "big").hex(),
                "value": rnd.randint(0, 10**6),
                "score": round(rnd.random(), 6),
                "title": " ".join(rnd.choice(WORDS) for _ in range(6)),
                "enabled": rnd.random() < 0.5,
            }
            i += 1
    return doc


def git_bytes(store_dir: Path) -> int:
    """Bytes of the ``.git`` of a store (or of any repository with a work tree)."""
    return int(gc.count_objects(store_dir)["git_bytes"])


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def run(flushes: int, rounds: int, block: int, keep: Path | None) -> int:
    logging.getLogger("gitstate.store").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="gitstate-bench-size-"))
    store_dir = work / "store"
    rnd = random.Random(20240606)
    doc = make_document(rnd)
    keys = list(doc)
    store = gitstate.open(store_dir, durability="manual", fsync=False, handle_signals=False, auto_pack=False)
    store.set("state.json", None, doc)
    store.flush()
    doc_bytes = (store_dir / "state.json").stat().st_size
    loose_per_flush = gc.count_objects(store_dir)["loose_bytes"]
    counter = iter(range(10**9))

    def flush_one() -> float:
        store.set("state.json", (rnd.choice(keys), "value"), next(counter))
        t0 = time.perf_counter()
        store.flush()
        return (time.perf_counter() - t0) * 1000

    def wire() -> gc.BackgroundPacker:
        # Wired exactly as gitstate.open() wires it.
        packer = gc.BackgroundPacker(store._repo, fsync=False)
        store._after_commit_hooks.append(packer.notify)
        store._background.append(packer)
        return packer

    def unwire(packer: gc.BackgroundPacker) -> None:
        packer.stop()
        store._background.remove(packer)
        store._after_commit_hooks.remove(packer.notify)

    # 1. Size: every flush with the packer at work, as in normal operation.
    print(f"# {flushes:,} flushes of a {doc_bytes / 1000:.0f} KB document with the packer", file=sys.stderr)
    packer = wire()
    t_start = time.perf_counter()
    for i in range(flushes):
        flush_one()
        if i % 1000 == 999:
            print(f"#   {i + 1} flushes, {time.perf_counter() - t_start:.0f}s", file=sys.stderr)
    build_s = time.perf_counter() - t_start
    counts_now = gc.count_objects(store_dir)
    size_now = counts_now["git_bytes"]
    passes = packer.passes
    packer.run_now(timeout_s=600)  # the pass it would run next
    size_settled = git_bytes(store_dir)
    unwire(packer)

    copy_git = work / "copy-git"
    shutil.copytree(store_dir, copy_git, symlinks=True)
    t0 = time.perf_counter()
    subprocess.run(["git", "-C", str(copy_git), "gc", "-q"], check=True)
    git_gc_s = time.perf_counter() - t0
    size_git = git_bytes(copy_git)
    fsck = subprocess.run(
        ["git", "-C", str(store_dir), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True
    )
    copy_ours = work / "copy-gitstate"
    shutil.copytree(store_dir, copy_ours, symlinks=True)
    from gitstate.repo import Repository

    repo = Repository.open(copy_ours, create=False)
    t0 = time.perf_counter()
    ours = gc.collect(repo, fsync=False)
    gitstate_gc_s = time.perf_counter() - t0
    repo.close()
    size_ours_gc = ours["size_after"]

    # 2. Latency: the same store, blocks of flushes alternately without and with the packer. Each block with
    # it starts with the backlog of the block before, so packing passes run during it.
    print(f"# latency: {rounds} rounds of {block} flushes without, then {block} with the packer", file=sys.stderr)
    lat_without: list[float] = []
    lat_with: list[float] = []
    lat_busy: list[float] = []
    block_medians: list[tuple[float, float]] = []
    for _ in range(rounds):
        off = [flush_one() for _ in range(block)]
        packer = wire()
        on = []
        for _ in range(block):
            busy_before = packer.busy
            ms = flush_one()
            on.append(ms)
            if busy_before or packer.busy:
                lat_busy.append(ms)
        unwire(packer)
        lat_without += off
        lat_with += on
        block_medians.append((statistics.median(off), statistics.median(on)))
    fsck_after = subprocess.run(
        ["git", "-C", str(store_dir), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True
    )
    store.close()

    med_without = statistics.median(lat_without)
    med_with = statistics.median(lat_with)
    med_busy = statistics.median(lat_busy) if lat_busy else float("nan")

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.9)] if xs else float("nan")

    clean = fsck.returncode == 0 and fsck_after.returncode == 0
    print()
    print(f"## Size after {flushes:,} flushes, one key each, of a {doc_bytes / 1000:.0f} KB JSON document")
    print()
    print("| repository | .git | vs git gc |")
    print("|---|---:|---:|")
    print(
        f"| loose objects, no packing (extrapolated) | {mb(loose_per_flush * (flushes + 1))} | "
        f"{loose_per_flush * (flushes + 1) / size_git:.1f}x |"
    )
    print(f"| gitstate, background packing, right after the last flush | {mb(size_now)} | {size_now / size_git:.2f}x |")
    print(
        f"| gitstate, background packing, after its next pass | {mb(size_settled)} | {size_settled / size_git:.2f}x |"
    )
    print(
        f"| `gitstate gc` on a copy (pure Python, {gitstate_gc_s:.1f} s) | {mb(size_ours_gc)} | "
        f"{size_ours_gc / size_git:.2f}x |"
    )
    print(f"| `git gc` on a copy ({git_gc_s:.1f} s) | {mb(size_git)} | 1.00x |")
    print()
    print(
        f"Right after the last flush: {counts_now['loose_objects']} loose objects "
        f"({mb(counts_now['loose_bytes'])}), {counts_now['packs']} packs; {passes} packing passes during the "
        f"{build_s:.0f} s run. `git fsck --strict`: {'clean' if clean else 'ERRORS'}. "
        f"`gitstate gc` packed {ours['objects']:,} objects ({ours['deltas']:,} as deltas)."
    )
    print()
    print(f"## Flush latency with and without the background packer (same store, {rounds} alternating rounds)")
    print()
    print("| flushes | n | median ms | p90 ms |")
    print("|---|---:|---:|---:|")
    print(f"| without the packer | {len(lat_without)} | {med_without:.2f} | {p90(lat_without):.2f} |")
    print(f"| with the packer | {len(lat_with)} | {med_with:.2f} | {p90(lat_with):.2f} |")
    print(f"| with the packer, while a pass was at work | {len(lat_busy)} | {med_busy:.2f} | {p90(lat_busy):.2f} |")
    print()
    spread = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in block_medians)
    print(
        f"Median added by the packer: {med_with - med_without:+.2f} ms (all flushes), "
        f"{med_busy - med_without:+.2f} ms (flushes during a pass); target <= 5 ms. "
        f"Block medians without/with: {spread}."
    )
    ok = size_now <= 2 * size_git and med_with - med_without <= 5.0 and clean
    if keep is not None:
        shutil.move(str(work), str(keep))
        print(f"\nkept in {keep}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="800 flushes and a short latency run (under a minute)")
    ap.add_argument("--flushes", type=int, default=None, help="flushes for the size run (default 10,000)")
    ap.add_argument("--rounds", type=int, default=None, help="latency rounds (default 6)")
    ap.add_argument("--block", type=int, default=None, help="flushes per latency block (default 150)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the repositories in this directory")
    args = ap.parse_args(argv)
    flushes = args.flushes or (800 if args.quick else 10_000)
    rounds = args.rounds or (2 if args.quick else 6)
    block = args.block or (80 if args.quick else 150)
    return run(flushes, rounds, block, args.keep)


if __name__ == "__main__":
    sys.exit(main())
