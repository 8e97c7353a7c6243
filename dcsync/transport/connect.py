"""Choosing the transport for a remote URL: a local ``dcsync serve`` subprocess, or SSH.

Local paths and ``file://`` URLs run ``python -m dcsync serve --stdio --root PATH`` with this
interpreter (or ``remote_dcsync`` split like a shell would, like git's ``--upload-pack``). SSH URLs
use paramiko, or the system ``ssh`` binary when ``ssh_command`` (``--ssh``) or ``DCSYNC_SSH`` is set,
like ``GIT_SSH_COMMAND``; the remote program defaults to ``dcsync`` on the remote PATH.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from dcsync.transport.base import Channel
from dcsync.transport.local import SubprocessChannel
from dcsync.transport.url import parse_remote_url, remote_command, split_command

__all__ = ["DEFAULT_REMOTE_DCSYNC", "SSH_COMMAND_ENV", "open_channel"]

DEFAULT_REMOTE_DCSYNC = "dcsync"
SSH_COMMAND_ENV = "DCSYNC_SSH"


def open_channel(
    url: str,
    *,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
    serve_args: Sequence[str] = (),
    accept_new_host_key: bool = False,
) -> Channel:
    """A connected channel to ``dcsync serve --stdio`` for ``url``; the caller closes it."""
    remote = parse_remote_url(url)
    if remote.scheme == "file":
        serve = ["serve", "--stdio", "--root", remote.path, *serve_args]
        if remote_dcsync is None:
            program = [sys.executable, "-m", "dcsync"]
        else:
            program = split_command(remote_dcsync, "dcsync command")
        return SubprocessChannel([*program, *serve], description=str(remote))

    command = remote_command(remote_dcsync or DEFAULT_REMOTE_DCSYNC, remote.path, serve_args)
    ssh_command = ssh_command or os.environ.get(SSH_COMMAND_ENV) or None
    if ssh_command is not None:
        from dcsync.transport.openssh import SystemSSHChannel

        return SystemSSHChannel(
            remote, command, ssh_command=ssh_command, accept_new_host_key=accept_new_host_key
        )
    from dcsync.transport.paramiko import ParamikoChannel  # paramiko is imported only when it is used

    return ParamikoChannel(remote, command, accept_new_host_key=accept_new_host_key)
