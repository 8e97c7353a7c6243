"""A real OpenSSH server on loopback for the SSH transport tests (STYLE.md item 13).

The session-scoped ``sshd`` fixture starts ``/usr/sbin/sshd -D -e`` on a free 127.0.0.1 port with
throwaway keys in a temporary directory and hands back an :class:`SSHServer`: where it listens, as
whom to log in, the client key, a ``known_hosts`` that knows the host key, and an ``ssh_config``
with the alias ``dcsync-test`` (HostName, Port, User, IdentityFile, UserKnownHostsFile), usable by
paramiko and, through ``-F``, by the system ``ssh``.

Sessions get a controlled environment through ``SetEnv``: HOME is a throwaway directory (no shell
startup files of the developer) and PYTHONPATH is this checkout, so ``remote_dcsync``
(``<this python> -m dcsync``) runs the code under test whatever the remote PATH holds.

Without sshd the fixture skips, except under CI (``CI`` set), where it fails: a green CI run must
have exercised real SSH.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
ALIAS = "dcsync-test"
REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    alias: str
    directory: Path
    host_key: Path  # the server's private host key (its .pub next to it)
    client_key: Path  # authorised in authorized_keys
    other_key: Path  # a valid key that is NOT authorised, for authentication failures
    other_host_pubkey: str  # "ssh-ed25519 AAAA..." of a key that is not the server's, for changed-key tests
    known_hosts: Path  # knows the host key as [127.0.0.1]:port
    ssh_config: Path
    authorized_keys: Path
    log: Path
    remote_home: Path

    @property
    def remote_dcsync(self) -> str:
        """The remote program for ``--remote-dcsync``: this interpreter, so PATH is irrelevant."""
        return f"{shlex.quote(sys.executable)} -m dcsync"

    @property
    def ssh_command(self) -> str:
        """A ``--ssh`` command for the system ssh binary that uses this server's ssh_config."""
        return f"ssh -F {shlex.quote(str(self.ssh_config))}"

    def url(self, path: str, *, alias: bool = True) -> str:
        if alias:
            return f"ssh://{self.alias}{path}"
        return f"ssh://{self.user}@{self.host}:{self.port}{path}"

    def known_hosts_line(self) -> str:
        return self.known_hosts.read_text().splitlines()[0]

    def config_block(self, alias: str, **extra: str) -> str:
        """An ssh_config ``Host`` block for this server under another alias, plus options."""
        options = {
            "HostName": self.host,
            "Port": str(self.port),
            "User": self.user,
            "IdentityFile": str(self.client_key),
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "BatchMode": "yes",
            **extra,
        }
        return f"Host {alias}\n" + "".join(f"    {k} {v}\n" for k, v in options.items())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def sshd_unavailable_reason() -> str | None:
    for program in (SSHD, shutil.which("ssh-keygen")):
        if program is None or not os.access(program, os.X_OK):
            return f"{program or 'ssh-keygen'} is not installed (apt-get install openssh-server)"
    return None


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _account_locked(user: str) -> bool:
    """True if ``user``'s password field is locked ('!'): sshd without PAM then refuses even keys."""
    try:
        with open("/etc/shadow", encoding="utf-8") as shadow:
            for line in shadow:
                name, _, rest = line.partition(":")
                if name == user:
                    return rest.startswith("!")
    except OSError:
        pass
    return False


def _supports(option: str, config: Path) -> bool:
    """Whether this sshd knows ``option`` (PerSourcePenalties came with OpenSSH 9.8)."""
    probe = config.with_name("probe_config")
    probe.write_text(config.read_text() + f"{option}\n")
    result = subprocess.run([SSHD, "-t", "-f", str(probe)], capture_output=True, text=True)
    return result.returncode == 0


def sshd_config_text(port: int, host_key: Path, pid_file: Path, options: dict[str, str]) -> str:
    """An sshd_config for a throwaway server on 127.0.0.1:``port``: key-only logins, no X11, no
    MOTD, no user environment, verbose logs, plus the caller's ``options`` (one ``Key value`` line
    each: AuthorizedKeysFile, PermitRootLogin, UsePAM, AllowTcpForwarding, SetEnv, ...)."""
    common = {
        "ListenAddress": "127.0.0.1",
        "Port": str(port),
        "HostKey": str(host_key),
        "PidFile": str(pid_file),
        "PubkeyAuthentication": "yes",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "StrictModes": "no",
        "X11Forwarding": "no",
        "PrintMotd": "no",
        "PrintLastLog": "no",
        "PermitUserEnvironment": "no",
        "MaxStartups": "100",
        "LogLevel": "VERBOSE",
    }
    clash = common.keys() & options.keys()
    if clash:
        raise ValueError(f"options repeat common sshd_config lines: {sorted(clash)}")
    return "".join(f"{key} {value}\n" for key, value in {**common, **options}.items())


def launch_sshd(directory: Path, render: Callable[[int], str]) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start ``sshd -D -e`` with the config ``render(port)`` for a free port, written to
    ``directory/sshd_config``, logging to ``directory/sshd.log``; returns (process, port, log).
    The caller stops the process (:func:`_stop`)."""
    config = directory / "sshd_config"
    log = directory / "sshd.log"
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probing and sshd's bind
        port = _free_port()
        config.write_text(render(port))
        if _supports("PerSourcePenalties no", config):  # failed-auth tests must not get us banned
            config.write_text(config.read_text() + "PerSourcePenalties no\n")
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if f"Server listening on 127.0.0.1 port {port}" in log.read_text(errors="replace"):
                return process, port, log
            time.sleep(0.02)
        last_error = log.read_text(errors="replace")
        _stop(process)
    raise RuntimeError(f"sshd did not start:\n{last_error}")


def start_sshd(directory: Path) -> tuple[SSHServer, subprocess.Popen[bytes]]:
    """Start sshd with fresh keys under ``directory``; the caller stops the returned process."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key, client_key = directory / "host_ed25519", directory / "client_ed25519"
    other_key, other_host = directory / "other_ed25519", directory / "other_host_ed25519"
    for path in (host_key, client_key, other_key, other_host):
        _keygen(path, f"dcsync-test-{path.name}")
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(client_key.with_suffix(".pub").read_text())
    remote_home = directory / "remote-home"
    remote_home.mkdir()
    with contextlib.suppress(PermissionError):  # not root: sshd will say what it misses
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    user = getpass.getuser()
    env = {
        "HOME": str(remote_home),
        "XDG_CONFIG_HOME": str(remote_home / ".config"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    options = {
        "AuthorizedKeysFile": str(authorized_keys),
        "PermitRootLogin": "prohibit-password",
        "UsePAM": "yes" if _account_locked(user) else "no",
        "AllowTcpForwarding": "yes",  # ProxyJump and ssh -W tests jump through this server to itself
        "SetEnv": " ".join(f"{k}={v}" for k, v in env.items()),
    }
    process, port, log = launch_sshd(
        directory, lambda free: sshd_config_text(free, host_key, directory / "sshd.pid", options)
    )
    host_pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    other_pub = other_host.with_suffix(".pub").read_text().split()
    server = SSHServer(
        host="127.0.0.1",
        port=port,
        user=user,
        alias=ALIAS,
        directory=directory,
        host_key=host_key,
        client_key=client_key,
        other_key=other_key,
        other_host_pubkey=f"{other_pub[0]} {other_pub[1]}",
        known_hosts=known_hosts,
        ssh_config=directory / "ssh_config",
        authorized_keys=authorized_keys,
        log=log,
        remote_home=remote_home,
    )
    server.ssh_config.write_text(server.config_block(ALIAS))
    return server, process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """A running OpenSSH server on loopback (skipped without sshd; a failure under CI)."""
    reason = sshd_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-SSH tests: {reason}")
        pytest.skip(reason)
    server, process = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        _stop(process)
