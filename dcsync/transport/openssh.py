"""SSH with the system ``ssh`` binary, on request (``--ssh CMD`` / ``DCSYNC_SSH``, like ``GIT_SSH_COMMAND``).

For what paramiko lacks (Kerberos, ControlMaster, hardware keys, Match exec...): ``ssh -o
BatchMode=yes`` runs the remote command over its pipes (a :class:`SubprocessChannel`), and fails
closed as ssh itself does. ssh's own failures become the same errors as paramiko's, read from its
stderr. paramiko is not imported.
"""

from __future__ import annotations

from dcsync.errors import AuthenticationFailed, ConnectionFailed, HostKeyError, RemoteError, UsageError
from dcsync.transport.local import SubprocessChannel
from dcsync.transport.stderr import quote_stderr
from dcsync.transport.url import RemoteURL, split_command

__all__ = ["SystemSSHChannel"]

_SSH_FAILURES: tuple[tuple[str, type[RemoteError]], ...] = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", HostKeyError),
    ("Host key verification failed", HostKeyError),
    ("No matching host key", HostKeyError),
    ("Permission denied", AuthenticationFailed),
    ("Too many authentication failures", AuthenticationFailed),
)


class SystemSSHChannel(SubprocessChannel):
    """``command`` run by the system ``ssh`` binary (``--ssh CMD`` / ``DCSYNC_SSH``) over its pipes.

    ssh's own failures (exit status 255 before the remote said anything) become the same errors
    as paramiko's, read from its stderr.
    """

    def __init__(
        self,
        url: RemoteURL,
        command: str,
        *,
        ssh_command: str = "ssh",
        accept_new_host_key: bool = False,
    ) -> None:
        if url.scheme != "ssh" or url.host is None:
            raise UsageError(f"not an SSH URL: {url}")
        argv = split_command(ssh_command, "ssh command")
        if url.port is not None:
            argv += ["-p", str(url.port)]
        if url.user is not None:
            argv += ["-l", url.user]
        argv += ["-o", "BatchMode=yes"]
        if accept_new_host_key:
            argv += ["-o", "StrictHostKeyChecking=accept-new"]
        argv += [url.host, "--", command]
        self._url = url
        self._received = False
        super().__init__(argv, description=str(url))

    def read(self, n: int) -> bytes:
        data = super().read(n)
        self._received = self._received or bool(data)
        return data

    def _at_end_of_stream(self) -> None:
        failure = self._ssh_failure()
        if failure is not None:
            raise failure

    def _lost(self, what: str) -> RemoteError:
        return self._ssh_failure() or super()._lost(what)

    def _ssh_failure(self) -> RemoteError | None:
        """ssh's own error if it failed before the remote command spoke (status 255), else None."""
        if self._received or self._settle() != 255:
            return None
        stderr = self.stderr_text()
        cls = next((c for needle, c in _SSH_FAILURES if needle in stderr), ConnectionFailed)
        changed = " (the HOST KEY HAS CHANGED)" if cls is HostKeyError and "CHANGED" in stderr else ""
        return cls(f"ssh {self._url.host}{changed}: ssh failed (status 255){quote_stderr(stderr)}")
