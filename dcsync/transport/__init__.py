"""Transports: byte channels to a ``dcsync serve --stdio`` peer (see :mod:`dcsync.transport.base`).

:func:`open_channel` picks one for a URL; :mod:`~dcsync.transport.local` and
:mod:`~dcsync.transport.ssh` hold the implementations, :mod:`~dcsync.testing.channel` the contract
tests they all pass. paramiko is imported only when an SSH channel is opened.
"""

from __future__ import annotations

from dcsync.transport.base import Channel
from dcsync.transport.connect import open_channel
from dcsync.transport.url import RemoteURL, parse_remote_url

__all__ = ["Channel", "RemoteURL", "open_channel", "parse_remote_url"]
