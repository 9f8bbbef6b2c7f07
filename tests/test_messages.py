"""Tests for gitstate.messages: commit messages and trailers built and parsed in one place, and the shipped
git hooks applying the same rules."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
from helpers import GIT_ENV
from hypothesis import given, settings
from hypothesis import strategies as st

import gitstate
from gitstate import messages
from gitstate.docdiff import MISSING, Change, diff
from gitstate.messages import (
    ACTOR_TRAILER,
    HUMAN,
    UNDO_TRAILER,
    build,
    change_message,
    parse,
    summarize,
)

PACKAGE = Path(gitstate.__file__).parent
HOOKS = Path(__file__).resolve().parent.parent / "hooks"


# ===================================================================== building: the exact bytes
def test_change_message_is_the_format_the_store_has_always_written() -> None:
    one = [Change("state.json", ("services", "slack"), "change", False, True)]
    assert change_message(None, one, "library") == (
        "state.json: services.slack false -> true\n\nGitstate-Actor: library\n"
    )
    two = [*one, Change("state.json", ("services", "new"), "add", MISSING, 3)]
    assert change_message(None, two, "library", metadata={"run id": "4\n2", "Éx": "y"}) == (
        "state.json: services.slack false -> true (+1 more)\n\n"
        "state.json: services.slack false -> true\nstate.json: services.new = 3\n\n"
        "Gitstate-Actor: library\nRun-id: 4 2\nX: y\n"
    )
    assert change_message("  my subject ", one, "human", extra_lines=["(why)"]) == (
        "my subject\n\nstate.json: services.slack false -> true\n(why)\n\nGitstate-Actor: human\n"
    )
    assert change_message(None, [], "library") == "no changes\n\nGitstate-Actor: library\n"


def test_build_joins_subject_body_and_trailers() -> None:
    assert build("merge a into main", [], [(ACTOR_TRAILER, "merge")]) == "merge a into main\n\nGitstate-Actor: merge\n"
    assert build("s", ["l1", "l2"], [(ACTOR_TRAILER, "restore"), (UNDO_TRAILER, "ab")]) == (
        "s\n\nl1\nl2\n\nGitstate-Actor: restore\nGitstate-Undo: ab\n"
    )


def test_metadata_trailer_names_stay_names_git_recognises() -> None:
    # git takes a trailer token to be ASCII letters, digits and '-': anything else would hide the whole block
    for raw, name in [("Run-Id", "Run-Id"), ("run id", "Run-id"), ("--", "Meta"), ("café", "Caf"), ("", "Meta")]:
        assert messages.trailer_name(raw) == name
        assert parse(change_message("s", [], "library", metadata={raw: "v"})).trailers[name] == "v"


# ===================================================================== parsing gitstate's own messages
trailer_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z").filter(lambda n: n.lower() != ACTOR_TRAILER.lower())
subjects = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=60).filter(
    lambda s: s.strip() == s and s != ""
)
body_lines = st.lists(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=60).filter(
        lambda s: s.strip() == s and s != ""
    ),
    max_size=5,
)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    subject=subjects,
    lines=body_lines,
    actor=st.sampled_from(messages.ACTORS),
    extra=st.dictionaries(trailer_names, values, max_size=4),
)
def test_build_parse_round_trip(subject: str, lines: list[str], actor: str, extra: dict[str, str]) -> None:
    """Subject and body lines come back as written; trailer values come back with every run of whitespace
    (newlines included) folded to one space and the ends stripped, as the message holds them; colons in values
    are kept (only the first colon of a trailer line separates its name)."""
    text = build(subject, lines, [(ACTOR_TRAILER, actor), *extra.items()])
    msg = parse(text)
    assert msg.subject == subject
    assert msg.body == "\n".join(lines)
    assert msg.actor == actor
    assert msg.trailers == {ACTOR_TRAILER: actor, **{k: " ".join(v.split()) for k, v in extra.items()}}
    assert parse(msg.render()) == msg


def test_values_with_newlines_and_colons() -> None:
    text = build("s", [], [(ACTOR_TRAILER, "library"), ("Url", "http://h:1/p"), ("Note", "two\nlines\r\n")])
    assert text.endswith("Url: http://h:1/p\nNote: two lines\n")
    assert parse(text).trailers == {ACTOR_TRAILER: "library", "Url": "http://h:1/p", "Note": "two lines"}


def test_summary_lines_are_never_taken_for_trailers() -> None:
    # a raw document without a suffix gives a body line that looks like a trailer: the body is its own paragraph
    text = change_message(None, [Change("Makefile", (), "change", b"a", b"b")] * 2, "library")
    msg = parse(text)
    assert msg.trailers == {ACTOR_TRAILER: "library"} and msg.body == "Makefile: changed\nMakefile: changed"


# ===================================================================== parsing messages written by plain git users
@pytest.mark.parametrize(
    ("text", "subject", "body", "trailers"),
    [
        ("fix typo", "fix typo", "", {}),
        ("fix typo\n", "fix typo", "", {}),
        ("fix typo\n\n\n", "fix typo", "", {}),
        ("\n\nfix typo\n", "fix typo", "", {}),
        (
            "subject\r\n\r\nbody line\r\n\r\nGitstate-Actor: library\r\n",
            "subject",
            "body line",
            {ACTOR_TRAILER: "library"},
        ),
        ("subject\n\nGitstate-Actor: merge\n\n\n", "subject", "", {ACTOR_TRAILER: "merge"}),
        ("subject  \n\nbody\n  \n", "subject", "body", {}),
        # the title paragraph is never trailers (git's rule), even when it looks like one
        ("Gitstate-Actor: library\n", "Gitstate-Actor: library", "", {}),
        # a trailer-looking line inside prose is not a trailer
        (
            "s\n\nGitstate-Actor: library\nand then some prose\n",
            "s",
            "Gitstate-Actor: library\nand then some prose",
            {},
        ),
        ("s\n\nGitstate-Actor: library\n\nprose at the end\n", "s", "Gitstate-Actor: library\n\nprose at the end", {}),
        # git's trailer conventions: folded continuation lines, a space before the colon, keys in any case
        ("s\n\nSigned-off-by: A <a@x>\nNote: one\n  two\n", "s", "", {"Signed-off-by": "A <a@x>", "Note": "one two"}),
        ("s\n\ngitstate-actor : migration\n", "s", "", {"gitstate-actor": "migration"}),
        # 25% trailers are enough when one of them is a git-generated one: the paragraph is the trailer block
        ("s\n\nprose\nmore prose\nmore\nSigned-off-by: A <a@x>\n", "s", "", {"Signed-off-by": "A <a@x>"}),
        ("", "", "", {}),
    ],
)
def test_parse_plain_git_messages(text: str, subject: str, body: str, trailers: dict[str, str]) -> None:
    msg = parse(text)
    assert (msg.subject, msg.body, msg.trailers) == (subject, body, trailers)
    assert msg.actor == trailers.get(ACTOR_TRAILER, trailers.get("gitstate-actor", HUMAN))
    assert messages.actor(text) == msg.actor
    assert messages.subject(text) == subject


def test_the_last_trailer_of_a_name_wins_and_lookup_ignores_case() -> None:
    text = "s\n\nGitstate-Actor: human\nGitstate-Undo: 1\ngitstate-undo: 2\n"
    assert messages.trailer(text, UNDO_TRAILER) == "2" and messages.trailer(text, "GITSTATE-UNDO") == "2"
    assert messages.trailer(text, "Missing") is None
    assert messages.trailer("fix typo\n", ACTOR_TRAILER) is None and messages.actor("fix typo\n") == HUMAN
    assert messages.has_actor(text) and not messages.has_actor("fix\n\nGitstate-Actor: x\nprose\n")


# ===================================================================== summary lines (moved from docdiff)
class TestSummarize:
    def test_lines_exactly(self) -> None:
        changes = [
            Change("state.json", ("services", "slack"), "change", False, True),
            Change("state.json", ("services", "new"), "add", MISSING, 3),
            Change("state.json", ("services", "old"), "remove", 3, MISSING),
            Change("tasks/t1.json", (), "add", MISSING, {"id": "t1"}),
            Change("tasks/t2.json", (), "remove", {"id": "t2"}, MISSING),
            Change("notes.md", (), "change", "a\n", "b\n"),
            Change("meetings.yaml", ("meetings", "event.123", "status"), "change", "open", "done"),
        ]
        assert summarize(changes) == [
            "state.json: services.slack false -> true",
            "state.json: services.new = 3",
            "state.json: services.old removed (was 3)",
            "tasks/t1.json: created",
            "tasks/t2.json: deleted",
            "notes.md: changed",
            'meetings.yaml: meetings."event.123".status "open" -> "done"',
        ]

    def test_from_diff(self) -> None:
        old = {"services": {"slack": False, "old": 3}, "tasks": [{"status": "todo"}]}
        new = {"services": {"slack": True, "new": 3}, "tasks": [{"status": "done"}]}
        assert summarize(diff(old, new, doc="state.json")) == [
            "state.json: services.slack false -> true",
            "state.json: services.old removed (was 3)",
            "state.json: services.new = 3",
            'state.json: tasks.0.status "todo" -> "done"',
        ]

    def test_no_doc_and_whole_value(self) -> None:
        assert summarize([Change("", ("a",), "change", 1, 2)]) == ["a 1 -> 2"]
        whole = Change("x.json", (), "change", {"a": 1}, [1])
        assert summarize([whole]) == ['x.json: changed {"a":1} -> [1]']
        assert summarize([Change("raw.bin", (), "change", b"a", b"b")]) == ["raw.bin: changed"]

    def test_max_lines(self) -> None:
        changes = [Change("s.json", (f"k{i}",), "add", MISSING, i) for i in range(25)]
        lines = summarize(changes)
        assert len(lines) == 21
        assert lines[19] == "s.json: k19 = 19"
        assert lines[20] == "… and 5 more changes"
        assert summarize(changes, max_lines=24)[-1] == "… and 1 more change"
        assert len(summarize(changes, max_lines=25)) == 25
        assert summarize([]) == []


def test_docdiff_no_longer_renders_summaries() -> None:
    from gitstate import docdiff

    assert not hasattr(docdiff, "summarize")


# ===================================================================== one place knows the format
def _docstring_nodes(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_no_module_but_messages_spells_a_gitstate_trailer() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "messages.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docstrings:
                value = node.value
                if (isinstance(value, str) and "Gitstate-" in value) or (
                    isinstance(value, bytes) and b"Gitstate-" in value
                ):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {value!r}")
    assert offenders == []


# ===================================================================== the hooks carry the same rules
def _shell_constants(path: Path) -> dict[str, str]:
    return dict(re.findall(r'^([A-Z_]+)="([^"$]*)"$', path.read_text(encoding="utf-8"), re.M))


def test_commit_msg_hook_copies_agree_with_messages() -> None:
    hook = HOOKS / "commit-msg"
    constants = _shell_constants(hook)
    assert constants["ACTOR_TRAILER"] == messages.ACTOR_TRAILER
    assert constants["HUMAN_ACTOR"] == messages.HUMAN
    # nothing else in the hook's code spells a trailer name: only the copies above do
    code = [line for line in hook.read_text().splitlines() if not line.lstrip().startswith("#")]
    spelled = [line for line in code if "Gitstate-" in line]
    assert spelled == [f'ACTOR_TRAILER="{messages.ACTOR_TRAILER}"']


def test_pre_commit_hook_has_no_message_rules() -> None:
    """pre-commit checks staged files only; if it ever reads a message it must share messages.py's names."""
    text = (HOOKS / "pre-commit").read_text()
    assert "Gitstate-" not in text and "trailer" not in text.lower()


def _git_trailers(path: Path) -> list[tuple[str, str]]:
    out = subprocess.run(
        ["git", "interpret-trailers", "--parse", str(path)], capture_output=True, text=True, check=True, env=GIT_ENV
    ).stdout
    return [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in out.splitlines())]


@pytest.mark.parametrize(
    "text",
    [
        "set x by hand\n",
        "set x by hand\n\nGitstate-Actor: migration\n",
        "subject\n\nbody\n\ngitstate-actor: restore\n",
        "Gitstate-Actor: library\n",
        "s\n\nGitstate-Actor: library\nand then some prose\n",
        "s\n\nGitstate-Actor: library\n\nprose at the end\n",
        "s\n\nSigned-off-by: A <a@x>\n",
        "s\n\nprose\nmore prose\nmore\nSigned-off-by: A <a@x>\nGitstate-Actor: merge\n",
        "subject\n\nbody\n\n\n",
        "subject\n\nNote: one\n  two\nGitstate-Actor : library\n",
    ],
)
def test_commit_msg_hook_and_parse_agree(tmp_path: Path, text: str) -> None:
    """git reads the same trailers as :func:`parse`; the hook adds the actor trailer exactly when
    :func:`messages.has_actor` says there is none; what it leaves parses to the actor it should."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=GIT_ENV)
    msg_file = tmp_path / "MSG"
    msg_file.write_text(text)
    before = _git_trailers(msg_file)
    assert dict(before) == {k.lower(): v for k, v in parse(text).trailers.items()}
    subprocess.run(["sh", str(HOOKS / "commit-msg"), str(msg_file)], cwd=tmp_path, check=True, env=GIT_ENV)
    after_text = msg_file.read_text()
    after = _git_trailers(msg_file)
    assert len(after) - len(before) == (0 if messages.has_actor(text) else 1)
    assert parse(after_text).actor == (messages.actor(text) if messages.has_actor(text) else HUMAN)
    assert dict(after) == {k.lower(): v for k, v in parse(after_text).trailers.items()}
