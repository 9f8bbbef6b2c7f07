"""Cost of a format-preserving program write (issue 13) against the canonical path, medians in one run.

A 1,000-line hand-commented YAML document (groups of keys under comments, blank lines, nested mappings, a
sequence) takes a program write that changes one key, adds one and deletes one:

* **canonical**: ``YAML.encode(value)`` (what every write cost before; comments lost);
* **encode_over**: ``YAML.encode_over(value, previous)`` (gitstate's splice; keeps every untouched byte), for one
  value changed (rewritten in place, no read-back) and for the three edits (read back to check);
* **encode_over, canonical file**: the same call when ``previous`` is gitstate's canonical text (the fast path);
* **ruamel round-trip**: ``ruamel.yaml`` load + dump, the reference library (when installed), and whether its
  output keeps the untouched lines byte for byte.

Target: encode_over within a few milliseconds. Usage: ``python benchmarks/bench_roundtrip.py [--repeat N]``
"""

from __future__ import annotations

import argparse
import copy
import difflib
import io
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import fmt_ms, median, time_call
from gitstate.codecs import YAML

__all__ = ["main", "make_document"]


def make_document(lines: int = 1000) -> str:
    """A hand-formatted YAML document of about ``lines`` lines."""
    out = ["# Service configuration, maintained by hand.", ""]
    group = 0
    while len(out) < lines:
        out += [f"# group {group}: what these settings are for", f"group_{group}:"]
        out += [f"    key_{i}: value {i}   # why {i}" for i in range(6)]
        out += ["    # ports in use", "    ports:", "      - 80", "      - 443", "    enabled: yes", ""]
        group += 1
    return "\n".join(out) + "\n"


def _change(value: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(value)
    new["group_3"]["key_2"] = "changed"
    new["group_5"]["added"] = 1
    del new["group_7"]["key_4"]
    return new


def _ruamel(text: str, new: dict[str, Any]) -> tuple[list[float], int] | None:
    try:
        from ruamel.yaml import YAML as RoundTrip
    except ImportError:
        return None
    rt = RoundTrip(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096

    def write() -> str:
        data = rt.load(text)
        data["group_3"]["key_2"] = new["group_3"]["key_2"]
        data["group_5"]["added"] = 1
        del data["group_7"]["key_4"]
        buf = io.StringIO()
        rt.dump(data, buf)
        return buf.getvalue()

    out = write()
    changed = sum(1 for d in difflib.ndiff(text.splitlines(), out.splitlines()) if d[:1] in "+-")
    return time_call(write, repeat=7), changed


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args(argv)
    text = make_document()
    previous = text.encode()
    value = YAML.decode(previous)
    new = _change(value)
    canonical_previous = YAML.encode(value)
    out = YAML.encode_over(new, previous)
    changed = sum(1 for d in difflib.ndiff(text.splitlines(), out.decode().splitlines()) if d[:1] in "+-")
    one = copy.deepcopy(value)
    one["group_40"]["key_1"] = "changed"
    rows = [
        ("canonical encode", time_call(lambda: YAML.encode(new), repeat=args.repeat), "(all comments lost)"),
        ("encode_over, one value changed", time_call(lambda: YAML.encode_over(one, previous), repeat=args.repeat), "2"),
        (
            "encode_over, changed + added + deleted key",
            time_call(lambda: YAML.encode_over(new, previous), repeat=args.repeat),
            f"{changed}",
        ),
        (
            "encode_over, canonical file",
            time_call(lambda: YAML.encode_over(new, canonical_previous), repeat=args.repeat),
            "(fast path)",
        ),
    ]
    reference = _ruamel(text, new)
    if reference is not None:
        rows.append(("ruamel.yaml round-trip, changed + added + deleted key", reference[0], f"{reference[1]}"))
    print(f"1 program write to a {len(text.splitlines())}-line commented YAML document ({len(previous):,} bytes)")
    print("| path | median | lines changed (+/-) |")
    print("| --- | ---: | --- |")
    for name, times, note in rows:
        print(f"| {name} | {fmt_ms(median(times))} | {note} |")


if __name__ == "__main__":
    main()
