"""The codec registry a store owns: a new format by suffix, and a wrapping codec (here a stand-in for encryption)
by path pattern. Every path that encodes or decodes a document must use the store's registry: writes and
flushes, reads after reopen, hand edits, history views (at, diff, log --key), restore, undo and migrations."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import fsck, git, make_store, status_porcelain, wait_until

import gitstate
from gitstate.codecs import JSON, Codec, Codecs, Wrapped
from gitstate.errors import DecodeError, EncodeError


class KeyValue(Codec):
    """A toy line format, ``key=value`` with int values: what a TOML codec would be to the store."""

    name = "kv"
    structured = True

    def encode(self, value: Any) -> bytes:
        return "".join(f"{k}={v}\n" for k, v in value.items()).encode()

    def decode(self, data: bytes, doc: str = "") -> Any:
        out: dict[str, int] = {}
        for n, line in enumerate(data.decode().splitlines(), 1):
            k, sep, v = line.partition("=")
            if not sep or not v.strip().lstrip("-").isdigit():
                raise DecodeError(doc, "expected key=integer", line=n, column=1)
            out[k.strip()] = int(v)
        return out

    def normalize(self, value: Any, doc: str = "", key: tuple[Any, ...] = ()) -> Any:
        if key:
            if len(key) != 1 or not isinstance(value, int):
                raise EncodeError(f"{doc}: kv documents hold top-level integers")
            return value
        if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
            raise EncodeError(f"{doc}: a kv document is a mapping of integers")
        return dict(value)


class Scrambled(Wrapped):
    """Stands in for encryption: base64 of the reversed bytes, with a marker line checked on the way back."""

    kind = "scrambled"

    def wrap_bytes(self, data: bytes) -> bytes:
        return b"SCRAMBLED\n" + base64.b64encode(data[::-1]) + b"\n"

    def unwrap_bytes(self, data: bytes, doc: str) -> bytes:
        head, _, body = data.partition(b"\n")
        if head != b"SCRAMBLED":
            raise DecodeError(doc, "not a scrambled document (wrong key or plain text)", line=1, column=1)
        return base64.b64decode(body)[::-1]


def _registry() -> Codecs:
    reg = Codecs()
    reg.register(".kv", KeyValue())
    reg.wrap("secrets/*", Scrambled)
    return reg


def test_registry_picks_by_suffix_then_wraps_by_pattern() -> None:
    reg = _registry()
    assert reg.for_doc("limits.kv").name == "kv"
    assert reg.for_doc("LIMITS.KV").name == "kv"
    assert reg.for_doc("secrets/api.json").name == "scrambled+json"
    assert reg.for_doc("secrets/deep/x.kv").name == "scrambled+kv"
    assert reg.for_doc("state.json") is JSON
    assert Codecs().for_doc("limits.kv").name == "bytes"  # registries are independent
    with pytest.raises(ValueError, match="suffix"):
        reg.register("kv", KeyValue())
    with pytest.raises(TypeError):
        reg.register(".x", object())  # type: ignore[arg-type]


def test_a_new_format_goes_through_every_path(tmp_path: Path) -> None:
    reg = _registry()
    with make_store(tmp_path, codecs=reg) as store:
        assert store.codecs is reg
        store.set("limits.kv", "workers", 4)
        store.set("limits.kv", "retries", 3)
        store.flush()
        store.set("limits.kv", "workers", 8)
        store.flush()
        assert (tmp_path / "limits.kv").read_text() == "workers=8\nretries=3\n"
        assert store.at("HEAD~1").get("limits.kv", "workers") == 4
        assert [(c.key, c.old, c.new) for c in store.diff("HEAD~1", "HEAD")] == [(("workers",), 4, 8)]
        assert [c.id for c in store.log(doc="limits.kv", key="retries")] == [store.log()[-1].id]
        assert "limits.kv: workers 4 -> 8" in store.log()[0].message
        with pytest.raises(EncodeError, match="integers"):
            store.set("limits.kv", "workers", "many")
        store.undo()
        assert store.get("limits.kv", "workers") == 4
    # A hand edit in the format is committed key by key; one that does not parse is quarantined.
    with make_store(tmp_path, codecs=reg) as store:
        (tmp_path / "limits.kv").write_text("workers=4\nretries=5\n")
        store.ingest(["limits.kv"])
        assert store.get("limits.kv") == {"workers": 4, "retries": 5}
        assert store.log()[0].actor == "human"
        (tmp_path / "limits.kv").write_text("workers=lots\n")
        store.ingest(["limits.kv"])
        assert store.get("limits.kv", "retries") == 5
        assert [q.doc for q in store.quarantined()] == ["limits.kv"]
    # Without the registry the document is plain bytes: nothing is misread.
    (tmp_path / "limits.kv").write_text("workers=4\nretries=5\n")
    with make_store(tmp_path) as plain:
        assert plain.get("limits.kv") == b"workers=4\nretries=5\n"
    fsck(tmp_path)


def test_a_wrapping_codec_keeps_plain_text_off_disk_and_out_of_history(tmp_path: Path) -> None:
    reg = _registry()
    with make_store(tmp_path, codecs=reg) as store:
        store.set("secrets/api.json", "token", "s3cr3t-one")
        store.set("state.json", "mode", "on")
        store.flush()
        store.set("secrets/api.json", "token", "s3cr3t-two")
        store.flush()
        on_disk = (tmp_path / "secrets/api.json").read_bytes()
        assert on_disk.startswith(b"SCRAMBLED\n") and b"s3cr3t" not in on_disk
        for rev in ("HEAD", "HEAD~1"):
            assert b"s3cr3t" not in git(tmp_path, "show", f"{rev}:secrets/api.json").encode()
        assert json.loads(git(tmp_path, "show", "HEAD:state.json")) == {"mode": "on"}  # other docs untouched
        assert store.get("secrets/api.json", "token") == "s3cr3t-two"
        assert store.at("HEAD~1").get("secrets/api.json", "token") == "s3cr3t-one"
        assert [c.key for c in store.diff("HEAD~1", "HEAD", doc="secrets/api.json")] == [("token",)]
        assert store.restore("HEAD~1", ["secrets/api.json"]).created
        assert store.get("secrets/api.json", "token") == "s3cr3t-one"
        assert b"s3cr3t" not in (tmp_path / "secrets/api.json").read_bytes()

        def rotate(tx: Any) -> None:
            tx.set("secrets/api.json", "rotated", True)

        store.migrate({1: rotate})
        assert store.get("secrets/api.json") == {"token": "s3cr3t-one", "rotated": True}
        assert b"rotated" not in git(tmp_path, "show", "HEAD:secrets/api.json").encode()
    assert status_porcelain(tmp_path) == ""
    # Opened without the key (the default registry) the document is unreadable JSON, never overwritten.
    with make_store(tmp_path) as plain, pytest.raises(gitstate.GitStateError):
        plain.get("secrets/api.json")
    assert (tmp_path / "secrets/api.json").read_bytes().startswith(b"SCRAMBLED\n")
    fsck(tmp_path)


def test_watcher_uses_the_store_registry(tmp_path: Path) -> None:
    reg = _registry()
    with make_store(tmp_path, codecs=reg) as store:
        store.set("limits.kv", "workers", 1)
        store.flush()
        store.watch(settle_ms=20, debounce_ms=10)
        tmp = tmp_path / ".limits.kv.tmp"
        tmp.write_text("workers=2\n")
        tmp.replace(tmp_path / "limits.kv")  # saved the way vim saves: write, then rename over
        wait_until(lambda: store.log()[0].actor == "human", message="the hand edit to be committed")
        assert store.get("limits.kv") == {"workers": 2}
        assert git(tmp_path, "show", "HEAD:limits.kv") == "workers=2\n"
