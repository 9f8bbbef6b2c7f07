"""Commit messages and their Git trailers: the one place that builds and parses them.

What belongs here: the message format of the spec's "Commits" section (a subject, the change lines, then a
paragraph of ``Gitstate-*`` trailers), the summary line of a change (``state.json: services.slack false ->
true``), the trailer names and actor values, and the rule that reads them back out of any message, gitstate's
own or one typed by a plain ``git`` user. What does not: diffs themselves (:mod:`gitstate.docdiff`), writing
commits (:mod:`gitstate.repo`), deciding who the actor is (the callers). The shipped ``hooks/commit-msg``
cannot import this module, so it carries a copy of :data:`ACTOR_TRAILER` and :data:`HUMAN`;
``tests/test_messages.py`` checks the copy agrees and that the hook and :func:`parse` read messages alike.

The format written::

    SUBJECT
    (blank line)
    CHANGE LINE ...          (left out when there are none)
    (blank line)
    Gitstate-Actor: ACTOR
    Name: value ...          (extra trailers)

Trailers are read with git's rules (``git interpret-trailers``), re-done in Python so reading a log of 10,000
commits needs no subprocess: only the last paragraph can hold trailers, never the title paragraph; it counts
when all its lines are ``Token: value`` lines (token of ASCII letters, digits and ``-``, spaces allowed before
the colon) or indented continuations, or when a quarter of them are and one is git-generated
(``Signed-off-by: ``); names match case-insensitively and the last trailer of a name wins. A value is kept on
one line: every run of whitespace in it (newlines included) is folded to one space when a message is built,
so a value never ends the trailer block; colons inside a value are kept. CRLF line ends are read as LF.

Example:
    >>> text = build("s.json: a 1 -> 2", [], [(ACTOR_TRAILER, LIBRARY)])
    >>> text
    's.json: a 1 -> 2\\n\\nGitstate-Actor: library\\n'
    >>> parse(text).actor, parse("fixed a typo").actor
    ('library', 'human')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # docdiff is imported where a change is described: `gitstate status` and `log` parse only
    from .docdiff import Change

__all__ = [
    "ACTORS",
    "ACTOR_TRAILER",
    "FORMATTING_ONLY",
    "HUMAN",
    "KEPT_FROM_TRAILER",
    "KEPT_REPLACES_TRAILER",
    "KEPT_RULES_TRAILER",
    "LIBRARY",
    "MERGE",
    "MIGRATION",
    "MIGRATION_TRAILER",
    "RESTORE",
    "SCHEMA_FROM_TRAILER",
    "SCHEMA_TO_TRAILER",
    "SUMMARY_MAX_LINES",
    "TRAILER_PREFIX",
    "UNDO_TRAILER",
    "Message",
    "actor",
    "build",
    "change_message",
    "formatting_line",
    "has_actor",
    "parse",
    "subject",
    "summarize",
    "summary_line",
    "trailer",
    "trailer_name",
    "trailer_value",
]

logger = logging.getLogger("gitstate.messages")

#: Every trailer gitstate writes starts with this.
TRAILER_PREFIX: Final = "Gitstate-"
#: Who made the commit: one of :data:`ACTORS`. Copied in ``hooks/commit-msg``.
ACTOR_TRAILER: Final = "Gitstate-Actor"
#: On an undo commit: the id of the commit it reverted.
UNDO_TRAILER: Final = "Gitstate-Undo"
#: On a migration commit: the schema version before and after the step, and the step's name.
SCHEMA_FROM_TRAILER: Final = "Gitstate-Schema-From"
SCHEMA_TO_TRAILER: Final = "Gitstate-Schema-To"
MIGRATION_TRAILER: Final = "Gitstate-Migration"
#: On a point kept by ``forget`` (:mod:`gitstate.retention`): the original commit whose state it keeps, how many
#: commits it stands for, and the rules that kept it.
KEPT_FROM_TRAILER: Final = "Gitstate-Kept-From"
KEPT_REPLACES_TRAILER: Final = "Gitstate-Kept-Replaces"
KEPT_RULES_TRAILER: Final = "Gitstate-Kept-Rules"

#: The actor values (spec: ``Gitstate-Actor: library|human|restore|migration|merge``).
LIBRARY: Final = "library"
HUMAN: Final = "human"
RESTORE: Final = "restore"
MIGRATION: Final = "migration"
MERGE: Final = "merge"
ACTORS: Final = (LIBRARY, HUMAN, RESTORE, MIGRATION, MERGE)

#: Lines git itself writes into trailer blocks; one of them lets a block be only 25% trailers.
_GIT_GENERATED: Final = ("Signed-off-by: ", "(cherry picked from commit ")
#: Change lines in a commit message's body (:func:`change_message`); the rest is counted in a final line.
SUMMARY_MAX_LINES: Final = 50


# ===================================================================== summary lines
def _is_text(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, memoryview))


def summary_line(change: Change) -> str:
    """One change as a line of a commit message (see :func:`summarize` for the forms).

    Example:
        >>> from gitstate.docdiff import Change
        >>> summary_line(Change("state.json", ("services", "slack"), "change", False, True))
        'state.json: services.slack false -> true'
    """
    from .docdiff import format_key, format_value

    prefix = f"{change.doc}: " if change.doc else ""
    if not change.key:
        if change.op == "add":
            return f"{prefix}created"
        if change.op == "remove":
            return f"{prefix}deleted"
        if _is_text(change.old) or _is_text(change.new):
            return f"{prefix}changed"
        return f"{prefix}changed {format_value(change.old)} -> {format_value(change.new)}"
    key = format_key(change.key)
    if change.op == "add":
        return f"{prefix}{key} = {format_value(change.new)}"
    if change.op == "remove":
        return f"{prefix}{key} removed (was {format_value(change.old)})"
    return f"{prefix}{key} {format_value(change.old)} -> {format_value(change.new)}"


def summarize(changes: Sequence[Change], *, max_lines: int = 20, more: int = 0) -> list[str]:
    """One line per change, as used in commit messages.

    Forms: ``state.json: services.slack false -> true`` (change), ``state.json: services.new = 3`` (add),
    ``state.json: services.old removed (was 3)`` (remove), ``tasks/t1.json: created`` / ``deleted`` (whole
    document added/removed), ``notes.md: changed`` (whole text document changed; a whole non-text value gives
    ``doc: changed OLD -> NEW``). The ``doc: `` prefix is left out when the change has no ``doc``. After
    ``max_lines`` lines, one final line ``… and N more changes`` (``change`` when N is 1).

    Args:
        changes: the changes, e.g. from :func:`gitstate.docdiff.diff`.
        max_lines: most change lines to write (at least 0).
        more: changes counted but not given (a big mapping's rest, :class:`gitstate.docdiff.KeyRun`): they come
            after ``changes`` and count in the final line. A flush gives at least ``max_lines`` changes before
            any it counts, so its lines are those of the full list.

    Returns:
        The lines, without newlines.

    Example:
        >>> from gitstate.docdiff import diff
        >>> summarize(diff({"s": False}, {"s": True}, doc="state.json"))
        ['state.json: s false -> true']
    """
    limit = max(0, max_lines)
    lines = [summary_line(c) for c in changes[:limit]]
    rest = len(changes) + more - limit
    if rest > 0:
        lines.append(f"… and {rest} more change{'s' if rest != 1 else ''}")
    return lines


# ===================================================================== building
def trailer_name(name: object) -> str:
    """A caller's metadata key as a trailer name git recognises: ASCII letters, digits and ``-`` (anything
    else becomes ``-``), no ``-`` at the ends, the first letter upper-cased; ``Meta`` when nothing is left.

    Example:
        >>> trailer_name("run id"), trailer_name("Run-Id"), trailer_name("??")
        ('Run-id', 'Run-Id', 'Meta')
    """
    cleaned = "".join(ch if (ch.isascii() and ch.isalnum()) or ch == "-" else "-" for ch in str(name)).strip("-")
    return cleaned[:1].upper() + cleaned[1:] if cleaned else "Meta"


def trailer_value(value: object) -> str:
    """A trailer value on one line: runs of whitespace (newlines too) folded to one space, ends stripped.

    Example:
        >>> trailer_value("two\\nlines "), trailer_value("http://h:1/p")
        ('two lines', 'http://h:1/p')
    """
    return " ".join(str(value).split())


def build(subject: str, body: Iterable[str] = (), trailers: Iterable[tuple[str, object]] = ()) -> str:
    """A commit message: ``subject``, a blank line, the ``body`` lines (if any), a blank line, the trailers.

    Names are written as given (use the constants here, or :func:`trailer_name` for a caller's keys); values go
    through :func:`trailer_value`. The message ends with one newline.

    Example:
        >>> build("undo 1234abcd: x", ["s.json: a 2 -> 1"], [(ACTOR_TRAILER, RESTORE), (UNDO_TRAILER, "1234abcd")])
        'undo 1234abcd: x\\n\\ns.json: a 2 -> 1\\n\\nGitstate-Actor: restore\\nGitstate-Undo: 1234abcd\\n'
    """
    lines = list(body)
    parts = [subject]
    if lines:
        parts.append("\n".join(lines))
    parts.append("\n".join(f"{name}: {trailer_value(value)}" for name, value in trailers))
    return "\n\n".join(parts) + "\n"


#: What a change that touched only comments and layout is called (commit subjects, ``show`` and ``diff``).
FORMATTING_ONLY: Final = "comments and formatting"


def formatting_line(doc: str) -> str:
    """The line of a change that touched only comments and layout (no value changed).

    Example:
        >>> formatting_line("settings.yaml")
        'settings.yaml: comments and formatting'
    """
    return f"{doc}: {FORMATTING_ONLY}"


def change_message(
    subject: str | None,
    changes: Sequence[Change],
    actor: str,
    metadata: Mapping[str, object] | None = None,
    extra_lines: Sequence[str] | None = None,
    *,
    more: int = 0,
) -> str:
    """The message of a commit of ``changes``: the subject given (stripped), else the one change line (with
    ``(+N more)`` and all lines in the body when there are several), else ``no changes``; then the change lines,
    ``extra_lines``, the actor trailer and one trailer per ``metadata`` item (names through :func:`trailer_name`).
    ``more``: changes counted after ``changes`` but not given (see :func:`summarize`).

    Example:
        >>> from gitstate.docdiff import Change
        >>> change_message(None, [Change("state.json", ("a",), "change", 1, 2)], LIBRARY, {"run id": "42"})
        'state.json: a 1 -> 2\\n\\nGitstate-Actor: library\\nRun-id: 42\\n'
    """
    lines = summarize(changes, max_lines=SUMMARY_MAX_LINES, more=more) if changes else []
    if subject:
        head, body = subject.strip(), lines
    elif lines:
        others = len(changes) + more - 1
        head = lines[0] if others == 0 else f"{lines[0]} (+{others} more)"
        body = lines if others else []
    else:
        head, body = "no changes", []
    body = body + list(extra_lines or [])
    extra = [(trailer_name(k), v) for k, v in (metadata or {}).items()]
    return build(head, body, [(ACTOR_TRAILER, actor), *extra])


# ===================================================================== parsing
@dataclass(frozen=True)
class Message:
    """A commit message taken apart.

    Attributes:
        subject: the first non-blank line, trailing whitespace stripped (gitstate's subjects are one line; a
            plain git title of several lines keeps only its first here).
        body: everything between the subject and the trailer block, blank lines at its ends stripped.
        trailers: name (as written) -> value (continuations unfolded); the last trailer of a name wins.

    Example:
        >>> m = parse("s\\n\\nbody\\n\\nGitstate-Actor: merge\\n")
        >>> m.subject, m.body, m.trailers, m.actor
        ('s', 'body', {'Gitstate-Actor': 'merge'}, 'merge')
    """

    subject: str
    body: str = ""
    trailers: dict[str, str] = field(default_factory=dict)

    def trailer(self, name: str) -> str | None:
        """The value of the trailer ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        found = None
        for key, value in self.trailers.items():
            if key.lower() == wanted:
                found = value
        return found

    @property
    def actor(self) -> str:
        """Who made the commit: the ``Gitstate-Actor`` trailer, else ``human`` (a commit made with plain git)."""
        return self.trailer(ACTOR_TRAILER) or HUMAN

    def render(self) -> str:
        """The message text again (:func:`build` of the parts)."""
        return build(self.subject, self.body.split("\n") if self.body else [], self.trailers.items())


def _separator_at(line: str) -> int:
    """Where the ``:`` of a trailer line ``Token: value`` is (git's ``find_separator``), or -1."""
    spaced = False
    for i, ch in enumerate(line):
        if ch == ":":
            return i if i >= 1 else -1
        if not spaced and ch.isascii() and (ch.isalnum() or ch == "-"):
            continue
        if i and ch in " \t":
            spaced = True
            continue
        return -1
    return -1


def _is_trailer_block(lines: list[str]) -> bool:
    """git's test: all lines are trailers (or their indented continuations), or at least a quarter are and
    one of them is git-generated. A continuation counts with the line it continues."""
    trailers = non_trailers = 0
    recognised = owner_is_trailer = False
    for line in lines:
        if line[0].isspace():
            non_trailers += 0 if owner_is_trailer else 1
            continue
        owner_is_trailer = line.startswith(_GIT_GENERATED) or _separator_at(line) >= 1
        recognised = recognised or line.startswith(_GIT_GENERATED)
        if owner_is_trailer:
            trailers += 1
        else:
            non_trailers += 1
    return bool(trailers) and (non_trailers == 0 or (recognised and trailers * 3 >= non_trailers))


def _trailer_items(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    last: str | None = None
    for line in lines:
        sep = -1 if line[0].isspace() else _separator_at(line)
        if sep >= 1:
            last = line[:sep].strip()
            out.pop(last, None)  # the last one of a name wins (and comes last)
            out[last] = line[sep + 1 :].strip()
        elif line[0].isspace() and last is not None:
            out[last] = f"{out[last]} {line.strip()}".strip()
        else:
            last = None  # a non-trailer line in a mixed block ends any continuation
    return out


def parse(message: str) -> Message:
    """Take a commit message apart: subject, body and trailers (git's rules, see the module docstring).

    Works on any message: gitstate's, or one a plain git user typed (no trailers, CRLF line ends, trailing
    blank lines, a title that looks like a trailer).

    Example:
        >>> parse("fix typo\\r\\n\\r\\n").subject, parse("fix typo").trailers
        ('fix typo', {})
    """
    lines = [line.rstrip() for line in message.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1
    if start == len(lines):
        return Message("")
    title_end = start
    while title_end < len(lines) and lines[title_end]:
        title_end += 1
    rest = lines[title_end:]
    trailers: dict[str, str] = {}
    if rest:
        block_start = len(rest)
        while block_start > 0 and rest[block_start - 1]:
            block_start -= 1
        block = rest[block_start:]
        if block_start > 0 and _is_trailer_block(block):
            trailers = _trailer_items(block)
            rest = rest[:block_start]
    body = "\n".join([*lines[start + 1 : title_end], *rest]).strip("\n")
    return Message(lines[start], body, trailers)


def subject(message: str) -> str:
    """The subject of ``message``: its first non-blank line, trailing whitespace stripped (cheap: no parse).

    Example:
        >>> subject("state.json: a 1 -> 2\\n\\nGitstate-Actor: library\\n")
        'state.json: a 1 -> 2'
    """
    head, _, rest = message.partition("\n")
    if head.strip():
        return head.rstrip()
    for line in rest.split("\n"):
        if line.strip():
            return line.rstrip()
    return ""


def trailer(message: str, name: str) -> str | None:
    """The value of the trailer ``name`` in ``message`` (case-insensitive; the last one wins), or None.

    Example:
        >>> trailer("undo x\\n\\nGitstate-Actor: restore\\nGitstate-Undo: 1234\\n", UNDO_TRAILER)
        '1234'
    """
    return parse(message).trailer(name)


def actor(message: str) -> str:
    """Who made the commit of ``message``: its ``Gitstate-Actor`` trailer, else ``human`` (plain git).

    Example:
        >>> actor("s\\n\\nGitstate-Actor: merge\\n"), actor("typed by hand")
        ('merge', 'human')
    """
    return parse(message).actor


def has_actor(message: str) -> bool:
    """True when ``message`` carries a ``Gitstate-Actor`` trailer (what the commit-msg hook checks).

    Example:
        >>> has_actor("s\\n\\nGitstate-Actor: library\\n"), has_actor("Gitstate-Actor: library")
        (True, False)
    """
    return parse(message).trailer(ACTOR_TRAILER) is not None
