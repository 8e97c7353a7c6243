"""A workspace's remotes and their partial-clone filters, as ``.dcsync/config.toml`` keeps them.

``[remotes.NAME]`` tables hold ``url`` and the options a connection needs (``remote_dcsync``,
``ssh_command``) and the filter a partial clone fetches with (``detectors``, ``ctypes``, ``since``
in ns, ``payloads``). docs/format.md, "Workspace config".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dcsync.errors import DcsyncError, RemoteNotFound, UsageError
from dcsync.store.refs import remote_ref
from dcsync.transport.url import parse_remote_url
from dcsync.workspace.workspace import Workspace


@dataclass(frozen=True)
class RemoteConfig:
    name: str
    url: str
    remote_dcsync: str | None = None
    ssh_command: str | None = None
    detectors: tuple[str, ...] = ()
    ctypes: tuple[str, ...] = ()
    since_ns: int | None = None  # stored as "since" (ns) in the workspace's config
    payloads: bool = True  # False: trees and commits only (a scratch clone for promotion)

    def filter(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not self.payloads:
            out["payloads"] = False
        if self.ctypes:
            out["ctypes"] = list(self.ctypes)
        if self.since_ns is not None:
            out["since"] = self.since_ns
        return out

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        for key in ("remote_dcsync", "ssh_command"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.since_ns is not None:
            out["since"] = self.since_ns
        if self.detectors:
            out["detectors"] = list(self.detectors)
        if self.ctypes:
            out["ctypes"] = list(self.ctypes)
        if not self.payloads:
            out["payloads"] = False
        return out


def remotes(ws: Workspace) -> dict[str, RemoteConfig]:
    out = {}
    for name, cfg in ws.config().get("remotes", {}).items():
        out[name] = RemoteConfig(
            name,
            str(cfg["url"]),
            cfg.get("remote_dcsync"),
            cfg.get("ssh_command"),
            tuple(cfg.get("detectors", ())),
            tuple(cfg.get("ctypes", ())),
            cfg.get("since"),
            bool(cfg.get("payloads", True)),
        )
    return out


def is_partial_clone(ws: Workspace) -> bool:
    """Whether ``ws`` fetches with a filter, so its files may lack payloads."""
    return any(r.filter() for r in remotes(ws).values())


def absolute_url(url: str) -> str:
    """``url`` with a relative local path made absolute, so it means the same from any directory."""
    if parse_remote_url(url).is_local and not url.startswith("file:") and not os.path.isabs(url):
        return str(Path(url).resolve())
    return url


def add_remote(ws: Workspace, remote: RemoteConfig) -> None:
    remote_ref(remote.name)  # validates the name
    remote = replace(remote, url=absolute_url(remote.url))
    config = ws.config()
    table = config.setdefault("remotes", {})
    if remote.name in table:
        raise UsageError(f"remote {remote.name!r} already exists ({table[remote.name]['url']})")
    table[remote.name] = remote.to_toml()
    ws.write_config(config)


def remove_remote(ws: Workspace, name: str) -> None:
    config = ws.config()
    if name not in config.get("remotes", {}):
        raise RemoteNotFound(f"no remote {name!r} in {ws.root}")
    del config["remotes"][name]
    ws.write_config(config)


def get_remote(ws: Workspace, name_or_url: str) -> RemoteConfig:
    """A configured remote by name or URL, or an ad-hoc one for any other URL or path: for
    ``diff`` and ``promote``, which keep no remote-tracking refs."""
    try:
        return tracking_remote(ws, name_or_url)
    except UsageError:
        if "/" in name_or_url or ":" in name_or_url or os.path.isdir(name_or_url):
            return RemoteConfig(name_or_url, name_or_url)
        raise


def tracking_remote(ws: Workspace, name_or_url: str) -> RemoteConfig:
    """The configured remote that ``fetch``, ``pull``, ``push`` and ``status`` keep
    ``remotes/<name>`` refs for: given by name, or by its URL (a relative path as well).

    Anything else is a usage error: a remote-tracking ref needs a name the user knows and can give
    to ``status`` and ``diff`` again (refs named after a hashed URL were invisible, and ``./x``,
    ``x`` and ``/abs/x`` got three of them).
    """
    known = remotes(ws)
    if name_or_url in known:
        return known[name_or_url]
    try:
        absolute = absolute_url(name_or_url)
    except DcsyncError:
        absolute = name_or_url
    for remote in known.values():
        if remote.url in (name_or_url, absolute):
            return remote
    raise UsageError(
        f"{name_or_url!r} is not a remote of {ws.root} (remotes: {', '.join(known) or 'none'}); "
        f"fetch, pull, push and status need a remote name: add one with "
        f"'dcsync remote add NAME {name_or_url}' (or compare without one: 'dcsync diff {name_or_url} .')"
    )


def remote_for(
    location: str,
    here: Workspace | None,
    *,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
) -> RemoteConfig:
    """How to reach ``location``: a remote of ``here`` by name, with its saved options; else a URL
    with the caller's ``--remote-dcsync``/``--ssh``, falling back to those saved with a remote of
    that URL (commands that take ad-hoc URLs: diff, promote)."""
    spec = get_remote(here, location) if here is not None else RemoteConfig(location, location)
    if here is None or location not in remotes(here):
        spec = replace(
            spec,
            remote_dcsync=remote_dcsync or spec.remote_dcsync,
            ssh_command=ssh_command or spec.ssh_command,
        )
    return spec
