"""ssh:// and scp-style (user@host:path) remotes through the user's own ssh binary ($GIT_SSH_COMMAND,
$GIT_SSH, else ssh); never core.sshCommand from a repository's config.

What belongs here: ssh_command() and the transport for ssh:// and scp-style URLs (dulwich's SSHGitClient with its
subprocess vendor), registered here. What does not: parsing scp-style addresses (credentials.py), the Transport
protocol and error translation (transport.py), what is sent or fetched (sync.py).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from dulwich.client import (
    SSHGitClient,
    SubprocessSSHVendor,
)

from .endpoint import Endpoint

if TYPE_CHECKING:
    pass


from .transport import Transport, register_transport

logger = logging.getLogger("gitstate.remote")


def ssh_command() -> str:
    """The user's ssh: ``$GIT_SSH_COMMAND``, ``$GIT_SSH``, else ``ssh`` (never the repository's config)."""
    cmd = os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH") or "ssh"
    if os.environ.get("GIT_SSH") and not os.environ.get("GIT_SSH_COMMAND"):
        import shlex

        cmd = shlex.quote(cmd)
    return cmd


def _open(ep: Endpoint, timeout_s: float) -> Transport:
    assert ep.host is not None
    return SSHGitClient(
        ep.host,
        port=ep.port,
        username=ep.username,
        vendor=SubprocessSSHVendor(),
        config=None,
        ssh_command=ssh_command(),
    )


register_transport("ssh", _open, url_schemes=["ssh", "git+ssh", "ssh+git"])
