"""Remote URLs, read the way git reads them, and the command lines that go with them.

Accepted forms::

    /abs/path   relative/path   file:///abs/path            a local repository ("file")
    ssh://[user@]host[:port]/path                            "ssh"; /~/p and /~user/p are home-relative
    [user@]host:path                                         scp-like "ssh", when no '/' precedes the ':'

As in git, ``a/b:c`` is a local path (a '/' comes before the ':') and ``host:c`` is SSH; IPv6 hosts
are written in brackets (``[::1]:path``, ``ssh://[::1]:22/path``). A host or user starting with '-'
is refused, so a URL can never smuggle an option into the ``ssh`` command line.

The remote command is one shell string: :func:`remote_command` quotes every argument, so a path
with spaces, quotes or ``; rm -rf ~`` stays one argument (both SSH channels run it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from dcsync.errors import UsageError

__all__ = ["RemoteURL", "parse_remote_url", "remote_command", "split_command"]

_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")
_TILDE = re.compile(r"~(?:[A-Za-z_][A-Za-z0-9._-]*)?(?=/|$)")


@dataclass(frozen=True)
class RemoteURL:
    """Where a remote repository lives; ``path`` is as given (relative: to the remote's home)."""

    scheme: Literal["file", "ssh"]
    user: str | None
    host: str | None
    port: int | None
    path: str

    def __str__(self) -> str:
        if self.scheme == "file" or self.host is None:  # parse_remote_url gives ssh URLs a host
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        if self.path.startswith("/"):
            port = f":{self.port}" if self.port is not None else ""
            return f"ssh://{user}{host}{port}{self.path}"
        if self.port is None:
            return f"{user}{host}:{self.path}"
        return f"ssh://{user}{host}:{self.port}/{self.path}"  # ~/... or ~user/...

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"


def parse_remote_url(url: str) -> RemoteURL:
    """Parse a remote location; a malformed one raises :class:`UsageError` naming it."""
    if not url or "\x00" in url:
        raise UsageError(f"invalid remote URL {url!r}: it is empty")
    if "://" in url:
        scheme, _, rest = url.partition("://")
        scheme = scheme.lower()
        if scheme == "file":
            return _parse_file(url, rest)
        if scheme == "ssh":
            return _parse_ssh(url)
        raise UsageError(
            f"invalid remote URL {url!r}: unsupported scheme {scheme!r} "
            "(use a path, file:///path, ssh://host/path or host:path)"
        )
    scp = _split_scp(url)
    if scp is None:
        return RemoteURL("file", None, None, None, url)
    userhost, path = scp
    user, _, host = userhost.rpartition("@")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not path:
        raise UsageError(f"invalid remote URL {url!r}: no path after the ':'")
    return RemoteURL("ssh", _check_user(url, user or None), _check_host(url, host), None, path)


def _split_scp(url: str) -> tuple[str, str] | None:
    """``(user@host, path)`` if ``url`` is scp-like: a ':' (outside brackets) before any '/'."""
    bracket = False
    for i, char in enumerate(url):
        if char == "/":
            return None
        if char == "[":
            bracket = True
        elif char == "]":
            bracket = False
        elif char == ":" and not bracket:
            return url[:i], url[i + 1 :]
    return None


def _parse_file(url: str, rest: str) -> RemoteURL:
    host, slash, path = rest.partition("/")
    if host not in ("", "localhost"):
        raise UsageError(f"invalid remote URL {url!r}: file:// URLs cannot name a host ({host!r})")
    if not slash:
        raise UsageError(f"invalid remote URL {url!r}: no path")
    return RemoteURL("file", None, None, None, "/" + unquote(path))


def _parse_ssh(url: str) -> RemoteURL:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid remote URL {url!r}: {exc}") from exc
    if parts.password is not None:
        raise UsageError(f"invalid remote URL {url!r}: passwords in URLs are not supported, use keys")
    if parts.query or parts.fragment:
        raise UsageError(f"invalid remote URL {url!r}: '?' and '#' have no meaning here")
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"invalid remote URL {url!r}: port {port} is out of range")
    # urlsplit lowercases the host; keep the spelling the user gave (ssh_config Host is case-sensitive)
    netloc_host = parts.netloc.rpartition("@")[2]
    bracketed = netloc_host.startswith("[")
    host = netloc_host[1:].partition("]")[0] if bracketed else netloc_host.partition(":")[0]
    path = unquote(parts.path)
    if path in ("", "/"):
        raise UsageError(f"invalid remote URL {url!r}: no path after the host")
    if path.startswith("/~"):
        path = path[1:]
    user = unquote(parts.username) if parts.username is not None else None
    return RemoteURL("ssh", _check_user(url, user), _check_host(url, host), port, path)


def _check_host(url: str, host: str) -> str:
    if not host:
        raise UsageError(f"invalid remote URL {url!r}: no host")
    if host.startswith("-") or _BAD_CHARS.search(host) or "@" in host or "/" in host:
        raise UsageError(f"invalid remote URL {url!r}: {host!r} is not a valid host name")
    return host


def _check_user(url: str, user: str | None) -> str | None:
    if user is None:
        return None
    if not user or user.startswith("-") or _BAD_CHARS.search(user):
        raise UsageError(f"invalid remote URL {url!r}: {user!r} is not a valid user name")
    return user


def split_command(command: str, what: str) -> list[str]:
    """A command line the user gave (``--remote-dcsync``, ``--ssh``) split as a shell would;
    :class:`UsageError` naming ``what`` when it cannot be split or is empty."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"invalid {what} {command!r}: {exc}") from exc
    if not words:
        raise UsageError(f"the {what} is empty")
    return words


def remote_command(remote_dcsync: str, path: str, extra: Sequence[str] = ()) -> str:
    """``<remote_dcsync> serve --stdio --root <path> <extra...>`` as one safely quoted shell string.

    ``remote_dcsync`` is split like a shell would (``"python3 -m dcsync"``) and every word is quoted.
    A leading ``~`` or ``~user`` of the program or the path is left to the remote shell to expand
    (``~/'my calib'``), as ``git`` does for ``host:~/repo``; everything after it is quoted.
    """
    program = split_command(remote_dcsync, "remote dcsync command")
    words = [_quote_home(program[0]), *(shlex.quote(w) for w in program[1:])]
    words += ["serve", "--stdio", "--root", _quote_home(path), *(shlex.quote(a) for a in extra)]
    return " ".join(words)


def _quote_home(word: str) -> str:
    match = _TILDE.match(word)
    if match is None:
        return shlex.quote(word)
    rest = word[match.end() :]
    return match.group() + ("/" + shlex.quote(rest[1:]) if rest[1:] else rest)
