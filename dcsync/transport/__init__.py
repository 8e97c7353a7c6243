"""Transports: byte channels to a ``dcsync serve --stdio`` peer (see :mod:`dcsync.transport.base`).

:func:`open_channel` picks one for a URL; :mod:`~dcsync.transport.local`,
:mod:`~dcsync.transport.paramiko` (with :mod:`~dcsync.transport.sshconfig`) and
:mod:`~dcsync.transport.openssh` hold the implementations, :mod:`~dcsync.testing.channel` the
contract tests they all pass. paramiko is imported only when a paramiko channel is opened.
"""

from __future__ import annotations

from dcsync.transport.base import Channel
from dcsync.transport.connect import open_channel
from dcsync.transport.url import RemoteURL, parse_remote_url

__all__ = ["Channel", "RemoteURL", "open_channel", "parse_remote_url"]
