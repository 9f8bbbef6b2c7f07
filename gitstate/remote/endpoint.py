"""A remote's address and what authenticates to it (Endpoint, Credentials), and scrub(), which hides those
secrets in any text shown. The vocabulary every other remote module shares; it imports none of them.

What belongs here: Endpoint, Credentials, TOKEN_USERNAME, scrub() and env_name(). What does not: parsing URLs and
reading stored or environment credentials (credentials.py), connecting to a remote (transport.py and the transport
modules).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")

#: The user name sent with a token given alone (GitHub, GitLab and Gitea accept any name with a token).
TOKEN_USERNAME: Final = "x-access-token"


# ===================================================================== URLs and credentials
@dataclass(frozen=True)
class Credentials:
    """What authenticates to a remote, from its URL, ``credentials.json`` or the environment. Never written to
    ``.git/config`` and never shown. ``query`` is the whole query string of an http(s) URL (``access_token=...``):
    which parameter names a server takes for a token cannot be known, so all of it counts as a credential."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    query: str | None = field(default=None, repr=False)

    def given(self) -> bool:
        return any(v is not None for v in (self.username, self.password, self.query))


@dataclass(frozen=True)
class Endpoint:
    """Where a remote is and how to reach it. ``url`` never carries a credential (no password, query or fragment);
    an http(s) endpoint's ``username``, ``password`` and ``query`` are sent with each request."""

    name: str
    url: str
    scheme: str  # "local" | "git" | "http" | "ssh"
    host: str | None = None
    port: int | None = None
    path: str = ""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    query: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Every text to hide in messages and logs: the password, a user name sent without one (then it is the
        token), the query and each of its values of 4 characters or more (shorter ones are no secret, and
        hiding them would garble port numbers and the like)."""
        out = [self.password] if self.password else []
        if self.scheme == "http" and self.username and not self.password and self.username != TOKEN_USERNAME:
            out.append(self.username)
        if self.query:
            out.append(self.query)
            for part in self.query.split("&"):
                value = part.partition("=")[2]
                out += [v for v in {value, unquote(value.replace("+", " "))} if len(v) >= 4]
        return out


def scrub(text: str, hidden: list[str]) -> str:
    """``text`` with every secret (as is and URL-quoted) replaced by ``***``."""
    for s in sorted({s for s in hidden if s}, key=len, reverse=True):  # a whole query before its values
        for form in {s, quote(s, safe=""), quote(s)}:
            text = text.replace(form, "***")
    return text


def env_name(name: str) -> str:
    """The prefix of the environment variables that hold remote ``name``'s credentials."""
    return "GITSTATE_REMOTE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
