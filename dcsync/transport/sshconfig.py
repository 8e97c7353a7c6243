"""Resolving an SSH host through ``~/.ssh/config``, as OpenSSH would, for the paramiko channel.

:func:`resolve` turns a host (an alias, a name) and what the URL and the caller say into one
:class:`SSHTarget`: HostName, User, Port, IdentityFile, IdentitiesOnly, UserKnownHostsFile,
GlobalKnownHostsFile, StrictHostKeyChecking, ProxyCommand, ProxyJump (:func:`parse_jump` reads
one hop), ServerAliveInterval, Compression and Ciphers (:func:`cipher_order`). What to connect to,
as whom and trusting which host keys is settled here; connecting is :mod:`dcsync.transport.paramiko`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from dcsync.errors import UsageError
from dcsync.model.identity import current_user
from dcsync.transport.url import parse_remote_url

DEFAULT_PORT = 22
SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# AES-GCM first: paramiko computes the MAC of the CTR ciphers in Python, packet by packet, while
# GCM is one AEAD call into OpenSSL. Measured on loopback: 740 MB/s against 380 MB/s for
# aes128-ctr + hmac-sha2-256 (scp: 450 MB/s). Servers without GCM fall back to paramiko's order.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True)
class SSHTarget:
    """One SSH hop after ssh_config: where to connect, as whom, with which keys and host keys."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    user_known_hosts: tuple[str, ...]
    global_known_hosts: tuple[str, ...]
    accept_new_host_key: bool
    allow_agent: bool
    look_for_keys: bool
    compress: bool
    ciphers: tuple[str, ...]  # in order of preference
    keepalive: int
    proxy_command: str | None
    proxy_jump: tuple[str, ...] = field(default=())

    def name(self) -> str:
        where = f"{self.user}@{self.hostname}:{self.port}"
        return where if self.alias == self.hostname else f"{self.alias} ({where})"


def load_config(path: str | os.PathLike[str] | None) -> paramiko.SSHConfig:
    if path is None:
        default = Path("~/.ssh/config").expanduser()
        if not default.is_file():
            return paramiko.SSHConfig()
        path = default
    try:
        return paramiko.SSHConfig.from_path(os.fspath(path))
    except OSError as exc:
        raise UsageError(f"cannot read ssh config {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    except paramiko.SSHException as exc:
        raise UsageError(f"invalid ssh config {os.fspath(path)!r}: {exc}") from exc


def resolve(
    config: paramiko.SSHConfig,
    host: str,
    *,
    user: str | None,
    port: int | None,
    identity_files: Sequence[str | os.PathLike[str]],
    known_hosts: str | os.PathLike[str] | None,
    accept_new_host_key: bool,
    keepalive: int,
) -> SSHTarget:
    options: dict[str, Any] = dict(config.lookup(host))

    def option(key: str) -> str | None:
        value = options.get(key)
        return None if value is None else str(value)

    def files(key: str) -> tuple[str, ...]:
        return tuple(os.path.expanduser(p) for p in (option(key) or "").split())

    try:
        port = port or int(option("port") or DEFAULT_PORT)
        keepalive = int(option("serveraliveinterval") or keepalive)
    except ValueError as exc:
        raise UsageError(f"ssh config for {host!r}: {exc}") from exc
    identities = [os.fspath(p) for p in identity_files]
    identities += [p for p in options.get("identityfile", []) if os.path.isfile(p)]
    strict = (option("stricthostkeychecking") or "yes").lower()
    user_known = (os.fspath(known_hosts),) if known_hosts is not None else files("userknownhostsfile")
    proxy_command = option("proxycommand")
    proxy_jump = option("proxyjump")
    return SSHTarget(
        alias=host,
        hostname=option("hostname") or host,
        port=port,
        user=user or option("user") or current_user(),
        identity_files=tuple(identities),
        user_known_hosts=user_known or (os.path.expanduser("~/.ssh/known_hosts"),),
        global_known_hosts=files("globalknownhostsfile") or SYSTEM_KNOWN_HOSTS,
        accept_new_host_key=accept_new_host_key or strict in ("accept-new", "no", "off"),
        allow_agent=option("identitiesonly") != "yes" and option("identityagent") != "none",
        look_for_keys=not (option("identitiesonly") == "yes" and identities),
        compress=option("compression") == "yes",
        ciphers=cipher_order(option("ciphers")),
        keepalive=keepalive,
        proxy_command=None if proxy_command in (None, "none") else proxy_command,
        proxy_jump=() if proxy_jump in (None, "none") else tuple(proxy_jump.split(",")),
    )


def cipher_order(configured: str | None) -> tuple[str, ...]:
    """The ciphers to offer: an ssh_config ``Ciphers`` list (those paramiko has), else GCM first.

    A list that edits the default (``+``, ``-``, ``^`` prefixes) keeps our default order.
    """
    supported: tuple[str, ...] = paramiko.Transport._preferred_ciphers
    if configured and configured[0] not in "+-^":
        wanted = tuple(c for c in configured.split(",") if c in supported)
        if wanted:
            return wanted
    return tuple(c for c in FAST_CIPHERS if c in supported) + tuple(
        c for c in supported if c not in FAST_CIPHERS
    )


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` of one ProxyJump hop."""
    text = spec.strip()
    url = text if text.startswith("ssh://") else f"ssh://{text}"
    try:
        parsed = parse_remote_url(url + "/-")
    except UsageError:
        parsed = None
    if parsed is None or parsed.scheme != "ssh" or parsed.host is None:
        raise UsageError(f"invalid ProxyJump hop {spec!r}: expected [user@]host[:port]")
    return parsed.user, parsed.host, parsed.port
