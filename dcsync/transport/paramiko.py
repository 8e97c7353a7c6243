"""SSH with paramiko, the default: ``~/.ssh/config``, the SSH agent and the default keys; fails closed.

:class:`ParamikoChannel` connects to the :class:`~dcsync.transport.sshconfig.SSHTarget` that
ssh_config makes of the URL (through each ProxyJump hop, or a ProxyCommand), then runs the remote
command. Host keys come from the system and user ``known_hosts``; an unknown host is refused unless
the caller explicitly accepts new keys (``accept_new_host_key`` or ``StrictHostKeyChecking
accept-new``/``no``, which then appends the key to the user ``known_hosts``), and a changed key is
always refused. Paramiko and OS errors are translated here into :class:`ConnectionFailed`,
:class:`AuthenticationFailed`, :class:`HostKeyError` and :class:`ConnectionLost`, each naming the
host and port. (This module is ``dcsync.transport.paramiko``; ``import paramiko`` in it is the
library: imports are absolute.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paramiko

from dcsync.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    DcsyncError,
    HostKeyError,
    RemoteError,
    UsageError,
)
from dcsync.rawio import write_all
from dcsync.transport import sshconfig
from dcsync.transport.base import Channel
from dcsync.transport.local import popen_pipe
from dcsync.transport.sshconfig import DEFAULT_PORT, SSHTarget, load_config, parse_jump
from dcsync.transport.stderr import StderrTail, quote_stderr
from dcsync.transport.url import RemoteURL

__all__ = ["ParamikoChannel"]

# paramiko logs connection failures with tracebacks; we raise them as our errors instead, so keep
# its records away from Python's last-resort stderr handler (an application's handlers still get them).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

CLOSE_TIMEOUT = 2.0


# -- host keys ------------------------------------------------------------------------------------


class _HostKeyPolicy(paramiko.RejectPolicy):  # type: ignore[misc]
    """Refuse unknown hosts, or (when explicitly accepted) append their key to known_hosts."""

    def __init__(self, target: SSHTarget) -> None:
        self._target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        path = Path(self._target.user_known_hosts[0])
        offered = f"{key.get_name()} {key.fingerprint}"
        if not self._target.accept_new_host_key:
            raise HostKeyError(
                f"ssh {self._target.name()}: the host key is not known (the server offered {offered}; "
                f"looked in {', '.join(self._known_hosts_files())}). Check the fingerprint with the "
                "server's administrator, then add it to known_hosts (ssh-keyscan, or one plain 'ssh' "
                "login), or set 'StrictHostKeyChecking accept-new' for this host in ~/.ssh/config"
            )
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            raise HostKeyError(
                f"ssh {self._target.name()}: cannot save the new host key to {path}: {exc.strerror or exc}"
            ) from exc
        client.get_host_keys().add(hostname, key.get_name(), key)

    def _known_hosts_files(self) -> list[str]:
        return [*self._target.user_known_hosts, *self._target.global_known_hosts]


def _changed_host_key(target: SSHTarget, exc: paramiko.BadHostKeyException) -> HostKeyError:
    files = ", ".join([*target.user_known_hosts, *target.global_known_hosts])
    name = target.hostname if target.port == DEFAULT_PORT else f"[{target.hostname}]:{target.port}"
    return HostKeyError(
        f"ssh {target.name()}: the HOST KEY HAS CHANGED: the server offered {exc.key.get_name()} "
        f"{exc.key.fingerprint}, but known_hosts ({files}) has {exc.expected_key.get_name()} "
        f"{exc.expected_key.fingerprint}. Someone may be intercepting the connection "
        "(man-in-the-middle), or the server was reinstalled. Refusing to connect; if the change is "
        f"legitimate, remove the old key with: ssh-keygen -R '{name}'"
    )


# -- connecting -----------------------------------------------------------------------------------


def _transport_factory(ciphers: tuple[str, ...]) -> Any:
    def make(sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        transport.get_security_options().ciphers = ciphers
        return transport

    return make


class _ProxyCommandSocket(paramiko.ProxyCommand):  # type: ignore[misc]
    """paramiko's ProxyCommand, run by the shell like OpenSSH does, with its stderr drained, end
    of stream reported (paramiko's spins on it), every byte sent (paramiko's ``send`` ignores a
    short write to the unbuffered pipe) and the process reaped on close."""

    def __init__(self, command: str, stderr: StderrTail) -> None:
        shell = os.environ.get("SHELL") or "/bin/sh"
        self.cmd = [shell, "-c", f"exec {command}"]
        try:
            self.process = subprocess.Popen(
                self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
            )
        except OSError as exc:
            raise ConnectionFailed(f"cannot run ProxyCommand {command!r}: {exc.strerror or exc}") from exc
        self.timeout: float | None = None
        self._closed_lock = threading.Lock()
        self._is_closed = False
        self._stderr = stderr
        self._out = popen_pipe(self.process.stdout)
        stderr.drain(popen_pipe(self.process.stderr).read, "ProxyCommand")

    def send(self, content: bytes) -> int:
        stdin = popen_pipe(self.process.stdin)
        try:
            write_all(stdin.fileno(), content)
        except (OSError, ValueError) as exc:  # ValueError: closed under us by close()
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), str(exc)) from exc
        return len(content)

    def recv(self, size: int) -> bytes:
        stdout = self._out
        try:
            readable, _, _ = select.select([stdout], [], [], self.timeout)
            data: bytes = os.read(stdout.fileno(), size) if readable else b""
        except (OSError, ValueError) as exc:  # ValueError: closed under us by close()
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), str(exc)) from exc
        if not readable:
            raise TimeoutError("ProxyCommand: no data yet")  # paramiko polls with a timeout
        return data  # b"" at end of stream: paramiko raises EOFError

    def close(self) -> None:
        with self._closed_lock:
            if self._is_closed:
                return
            self._is_closed = True
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.wait(CLOSE_TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _connect(target: SSHTarget, sock: Any, *, timeout: float, stderr: StderrTail) -> paramiko.SSHClient:
    """An authenticated SSHClient to ``target`` (over ``sock`` if given), errors translated."""
    client = paramiko.SSHClient()
    try:
        for path in target.global_known_hosts:
            if os.path.isfile(path):
                client.load_system_host_keys(path)
        for path in target.user_known_hosts:
            if os.path.isfile(path):
                client.get_host_keys().load(path)
        client.set_missing_host_key_policy(_HostKeyPolicy(target))
        if sock is None and target.proxy_command is not None:
            sock = _ProxyCommandSocket(target.proxy_command, stderr)
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            key_filename=list(target.identity_files) or None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=target.allow_agent,
            look_for_keys=target.look_for_keys,
            compress=target.compress,
            sock=sock,
            transport_factory=_transport_factory(target.ciphers),
        )
        client.get_transport().set_keepalive(target.keepalive)
    except BaseException as exc:
        _close_client(client)
        if sock is not None:
            sock.close()
        if isinstance(exc, Exception) and not isinstance(exc, DcsyncError):
            raise _translate(target, exc, stderr) from exc
        raise
    return client


def _close_client(client: paramiko.SSHClient) -> None:
    """Close a client and its socket: paramiko skips the socket when the transport already died."""
    transport = client.get_transport()
    sock = getattr(transport, "sock", None)
    client.close()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _translate(target: SSHTarget, exc: Exception, stderr: StderrTail) -> RemoteError:
    where = f"ssh {target.name()}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return _changed_host_key(target, exc)
    if isinstance(exc, paramiko.PasswordRequiredException):
        return AuthenticationFailed(f"{where}: a private key needs a passphrase; load it into ssh-agent")
    if isinstance(exc, paramiko.AuthenticationException):
        keys = ", ".join(target.identity_files) or "none configured"
        reason = str(exc).rstrip(".")
        reason = "the server accepted none of our keys" if reason == "Authentication failed" else reason
        tried = f"identity files: {keys}; default keys in ~/.ssh: {'yes' if target.look_for_keys else 'no'}"
        tried += "; ssh-agent: " + ("yes" if target.allow_agent else "no (IdentitiesOnly)")
        return AuthenticationFailed(f"{where}: authentication failed: {reason} ({tried})")
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        detail = "connection refused or host unreachable"
    elif isinstance(exc, socket.gaierror):
        detail = f"cannot resolve host name {target.hostname!r} ({exc.strerror})"
    elif isinstance(exc, TimeoutError):
        detail = "timed out"
    elif isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    return ConnectionFailed(f"{where}: {detail}{quote_stderr(stderr.text())}")


# -- the channel ----------------------------------------------------------------------------------


class ParamikoChannel(Channel):
    """``command`` executed over SSH with paramiko; connects (and may raise) on construction."""

    def __init__(
        self,
        url: RemoteURL,
        command: str,
        *,
        config_path: str | os.PathLike[str] | None = None,
        known_hosts: str | os.PathLike[str] | None = None,
        accept_new_host_key: bool = False,
        identity_files: Sequence[str | os.PathLike[str]] = (),
        connect_timeout: float = 15,
        keepalive: int = 30,
    ) -> None:
        if url.scheme != "ssh" or url.host is None:
            raise UsageError(f"not an SSH URL: {url}")
        self._url = url
        self._stderr = StderrTail()
        self._closed = False
        self._lock = threading.Lock()
        self._clients: list[paramiko.SSHClient] = []
        config = load_config(config_path)

        def resolve(host: str, user: str | None, port: int | None) -> SSHTarget:
            return sshconfig.resolve(
                config,
                host,
                user=user,
                port=port,
                identity_files=identity_files,
                known_hosts=known_hosts,
                accept_new_host_key=accept_new_host_key,
                keepalive=keepalive,
            )

        target = resolve(url.host, url.user, url.port)
        self._target = target
        try:
            sock: Any = None
            for hop in target.proxy_jump:  # each hop is reached through the previous one
                hop_user, hop_host, hop_port = parse_jump(hop)
                jump = resolve(hop_host, hop_user, hop_port)
                if self._clients:
                    sock = self._direct_tcpip(jump, connect_timeout)
                self._clients.append(_connect(jump, sock, timeout=connect_timeout, stderr=self._stderr))
            if self._clients:
                sock = self._direct_tcpip(target, connect_timeout)
            self._clients.append(_connect(target, sock, timeout=connect_timeout, stderr=self._stderr))
            self._chan = self._exec(command, connect_timeout)
        except BaseException:
            self._close_clients()
            raise
        self._stderr_thread = self._stderr.drain(self._chan.recv_stderr, self.describe())

    def _direct_tcpip(self, target: SSHTarget, timeout: float) -> Any:
        """A tunnel from the last connected hop to ``target`` (what ``ssh -J`` does)."""
        hop = self._clients[-1]
        try:
            return hop.get_transport().open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
            )
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectionFailed(
                f"ssh {target.name()}: the jump host could not open a tunnel to it ({exc})"
            ) from exc

    def _exec(self, command: str, timeout: float) -> Any:
        try:
            chan = self._clients[-1].get_transport().open_session(timeout=timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectionFailed(
                f"ssh {self._target.name()}: cannot run the remote command ({exc})"
            ) from exc
        return chan

    @property
    def exit_status(self) -> int | None:
        """The remote command's exit status once it has exited (-1: none reported), else None."""
        if not self._chan.exit_status_ready():
            return None
        status: int = self._chan.recv_exit_status()
        return status

    def read(self, n: int) -> bytes:
        if n < 1:
            raise ValueError(f"read size must be at least 1, not {n}")
        if self._closed:
            raise ConnectionLost(f"{self.describe()}: read from a closed channel")
        try:
            data: bytes = self._chan.recv(n)
        except (OSError, paramiko.SSHException) as exc:
            raise self._lost(f"reading failed ({exc})") from exc
        if not data:
            if not self._chan.exit_status_ready() and not self._transport_active():
                raise self._lost("the SSH connection dropped")
            # The remote's stderr arrived before its end of stream, but the thread draining it may
            # not have taken it yet; it ends at the same end of stream, so this wait is short.
            self._stderr_thread.join(CLOSE_TIMEOUT)
        return data

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionLost(f"{self.describe()}: write to a closed channel")
        if self._chan.exit_status_ready() or self._chan.closed:
            raise self._lost("the remote command has exited")
        try:
            self._chan.sendall(data)
        except (OSError, paramiko.SSHException) as exc:
            raise self._lost(f"writing failed ({exc})") from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            self._chan.shutdown_write()  # the remote reads end of stream and exits
        self._chan.status_event.wait(CLOSE_TIMEOUT)
        self._chan.close()
        self._stderr_thread.join(CLOSE_TIMEOUT)
        self._close_clients()
        self._stderr.wait(CLOSE_TIMEOUT)  # a ProxyCommand's stderr ends with its process

    def stderr_text(self) -> str:
        return self._stderr.text()

    def describe(self) -> str:
        return str(self._url)

    def _transport_active(self) -> bool:
        transport = self._chan.get_transport()
        return transport is not None and bool(transport.is_active())

    def _close_clients(self) -> None:
        for client in reversed(self._clients):  # the target first, then the hops it runs through
            _close_client(client)
        self._clients.clear()

    def _lost(self, what: str) -> ConnectionLost:
        self._chan.status_event.wait(CLOSE_TIMEOUT)
        if self._chan.exit_status_ready():
            self._stderr_thread.join(CLOSE_TIMEOUT)
        status = self.exit_status
        exited = "" if status is None else f" (it exited with status {status})"
        return ConnectionLost(f"{self.describe()}: {what}{exited}{quote_stderr(self.stderr_text())}")
