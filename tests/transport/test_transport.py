"""Transports: the Channel contract for every implementation (real sshd on loopback included), URL
parsing, remote command quoting, host keys that fail closed, and ssh_config features."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sshd import SSHServer  # tests/ is on sys.path (see conftest.py)

from dcsync.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    HostKeyError,
    RemoteError,
    UsageError,
)
from dcsync.testing.channel import ChannelContract, Peer
from dcsync.transport import open_channel
from dcsync.transport.base import Channel
from dcsync.transport.local import InProcessChannel, SubprocessChannel
from dcsync.transport.openssh import SystemSSHChannel
from dcsync.transport.paramiko import ParamikoChannel
from dcsync.transport.url import RemoteURL, parse_remote_url, remote_command

# A stand-in for dcsync on the far side: prints the arguments it got as JSON.
ARGV_PRINTER = f"{shlex.quote(sys.executable)} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"


@pytest.fixture(autouse=True)
def _no_ssh_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def read_all(channel: Channel) -> bytes:
    out = bytearray()
    while chunk := channel.read(65536):
        out += chunk
    return bytes(out)


def printed_argv(channel: Channel) -> list[str]:
    with channel:
        output = read_all(channel)
    argv: list[str] = json.loads(output)
    return argv


def accepted_logins(server: SSHServer) -> int:
    return server.log_text().count("Accepted publickey")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the contract, for every transport -------------------------------------------------------------


class TestSubprocessChannel(ChannelContract):
    def make_channel(self, peer: Peer) -> Channel:
        return SubprocessChannel(peer.argv(), description=f"test peer ({peer.mode})")


class TestInProcessChannel(ChannelContract):
    peer_has_stderr = False
    can_stop_peer = False

    def make_channel(self, peer: Peer) -> Channel:
        return InProcessChannel(peer.serve)


class TestParamikoChannel(ChannelContract):
    @pytest.fixture(autouse=True)
    def _server(self, sshd: SSHServer) -> None:
        self.server = sshd

    def make_channel(self, peer: Peer) -> Channel:
        url = parse_remote_url(self.server.url("/unused"))
        return ParamikoChannel(url, peer.command(), config_path=self.server.ssh_config)


class TestSystemSSHChannel(ChannelContract):
    end_of_stream_repeats = 15  # each ssh is slow to start; its end of stream is the subprocess one

    @pytest.fixture(autouse=True)
    def _server(self, sshd: SSHServer) -> None:
        self.server = sshd

    def make_channel(self, peer: Peer) -> Channel:
        url = parse_remote_url(self.server.url("/unused"))
        return SystemSSHChannel(url, peer.command(), ssh_command=self.server.ssh_command)


# -- local channels -----------------------------------------------------------------------------


def test_subprocess_channel_reports_the_exit_status() -> None:
    channel = SubprocessChannel(Peer("exit").argv(), description="exit peer")
    assert read_all(channel) == b"bye\n"
    channel.close()
    assert channel.returncode == 3


def test_subprocess_channel_names_a_missing_program() -> None:
    with pytest.raises(ConnectionFailed, match="no-such-dcsync-program"):
        SubprocessChannel(["no-such-dcsync-program", "serve"], description="local peer")


def test_in_process_exception_ends_the_stream_and_is_captured() -> None:
    def serve(read: object, write: object) -> None:
        raise KeyError("the server broke")

    channel = InProcessChannel(serve)
    assert channel.read(10) == b""
    assert "the server broke" in channel.stderr_text()
    with pytest.raises(ConnectionLost, match="the server broke"):
        channel.write(b"x")
    channel.close()
    assert channel.finished


# -- URLs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/abs/path", RemoteURL("file", None, None, None, "/abs/path")),
        ("relative/path", RemoteURL("file", None, None, None, "relative/path")),
        ("calib", RemoteURL("file", None, None, None, "calib")),
        ("./a:b", RemoteURL("file", None, None, None, "./a:b")),
        ("dir/a:b", RemoteURL("file", None, None, None, "dir/a:b")),
        ("file:///abs/p", RemoteURL("file", None, None, None, "/abs/p")),
        ("file://localhost/abs/p%20q", RemoteURL("file", None, None, None, "/abs/p q")),
        ("ssh://host/data/calib", RemoteURL("ssh", None, "host", None, "/data/calib")),
        ("ssh://alice@Host.example:2222/c", RemoteURL("ssh", "alice", "Host.example", 2222, "/c")),
        ("SSH://host/~/calib", RemoteURL("ssh", None, "host", None, "~/calib")),
        ("ssh://host/~bob/calib", RemoteURL("ssh", None, "host", None, "~bob/calib")),
        ("ssh://[::1]:22/c", RemoteURL("ssh", None, "::1", 22, "/c")),
        ("ssh://u@[fe80::1]/c%20d", RemoteURL("ssh", "u", "fe80::1", None, "/c d")),
        ("host:calib", RemoteURL("ssh", None, "host", None, "calib")),
        ("alice@host:/data/calib", RemoteURL("ssh", "alice", "host", None, "/data/calib")),
        ("host:~/calib", RemoteURL("ssh", None, "host", None, "~/calib")),
        ("a@b@host:p", RemoteURL("ssh", "a@b", "host", None, "p")),
        ("[::1]:calib", RemoteURL("ssh", None, "::1", None, "calib")),
        ("bob@[::1]:/c", RemoteURL("ssh", "bob", "::1", None, "/c")),
        ("host:a/b:c", RemoteURL("ssh", None, "host", None, "a/b:c")),
    ],
)
def test_parse_remote_url(url: str, expected: RemoteURL) -> None:
    parsed = parse_remote_url(url)
    assert parsed == expected
    assert parse_remote_url(str(parsed)) == parsed  # str() gives back an equivalent URL


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://host/path",
        "ssh://host",
        "ssh://host/",
        "ssh:///path",
        "ssh://host:99999/p",
        "ssh://host:port/p",
        "ssh://user:secret@host/p",
        "ssh://-oProxyCommand=touch%20x/p",
        "-oProxyCommand=x:path",
        "ssh://-u@host/p",
        "host:",
        "file://otherhost/p",
        "ssh://ho st/p",
    ],
)
def test_bad_remote_urls_name_the_url(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_remote_url(url)
    assert repr(url) in str(caught.value)


# -- remote command quoting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "path", "extra", "expected"),
    [
        ("dcsync", "/data/calib", [], "dcsync serve --stdio --root /data/calib"),
        (
            "'/opt/my tools/dcsync'",  # split like a shell would: quote a program with spaces
            "/a b/it's",
            ["--read-only"],
            "'/opt/my tools/dcsync' serve --stdio --root '/a b/it'\"'\"'s' --read-only",
        ),
        ("python3 -m dcsync", "calib", [], "python3 -m dcsync serve --stdio --root calib"),
        ("~/venv/bin/dcsync", "~/calib", [], "~/venv/bin/dcsync serve --stdio --root ~/calib"),
        ("dcsync", "~alice/my calib", [], "dcsync serve --stdio --root ~alice/'my calib'"),
        ("dcsync", "~", [], "dcsync serve --stdio --root ~"),
        ("dcsync", "~-/x", [], "dcsync serve --stdio --root '~-/x'"),
        ("dcsync", "~1", [], "dcsync serve --stdio --root '~1'"),
        ("dcsync", "/x; rm -rf ~", [], "dcsync serve --stdio --root '/x; rm -rf ~'"),
    ],
)
def test_remote_command_quotes_every_word(program: str, path: str, extra: list[str], expected: str) -> None:
    assert remote_command(program, path, extra) == expected


def nasty_paths(marker: Path) -> list[str]:
    return [
        "/tmp/a b",
        "/tmp/it's",
        '/tmp/"double"',
        f"/tmp/x; touch {marker}",
        f"/tmp/$(touch {marker})",
        f"/tmp/`touch {marker}`",
        f"/tmp/x && touch {marker} #",
        "/tmp/new\nline\ttab",
        "-rf",
        "*",
    ]


def test_remote_command_survives_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for path in nasty_paths(marker):
        command = remote_command(ARGV_PRINTER, path, ["--flag", "x y"])
        result = subprocess.run(["sh", "-c", command], capture_output=True, check=True, cwd=tmp_path)
        assert json.loads(result.stdout) == ["serve", "--stdio", "--root", path, "--flag", "x y"]
    assert not marker.exists()
    home = os.environ["HOME"]
    result = subprocess.run(["sh", "-c", remote_command(ARGV_PRINTER, "~/my calib", [])], capture_output=True)
    assert json.loads(result.stdout)[-1] == f"{home}/my calib"


def test_remote_command_survives_ssh(sshd: SSHServer, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    url = parse_remote_url(sshd.url("/unused"))
    for path in [*nasty_paths(marker), "~/calib dir"]:
        command = remote_command(ARGV_PRINTER, path, [])
        argv = printed_argv(ParamikoChannel(url, command, config_path=sshd.ssh_config))
        expected = path.replace("~", str(sshd.remote_home), 1) if path.startswith("~/") else path
        assert argv == ["serve", "--stdio", "--root", expected]
    assert not marker.exists()


# -- host keys fail closed ----------------------------------------------------------------------


def direct(sshd: SSHServer, command: str = "echo connected", **options: object) -> ParamikoChannel:
    """A paramiko channel to 127.0.0.1:port with the client key and no ssh_config."""
    url = RemoteURL("ssh", sshd.user, sshd.host, sshd.port, "/unused")
    kwargs: dict[str, object] = {"identity_files": [sshd.client_key], "known_hosts": sshd.known_hosts}
    kwargs.update(options)
    return ParamikoChannel(url, command, **kwargs)  # type: ignore[arg-type]


def test_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with pytest.raises(HostKeyError, match="not known") as caught:
        direct(sshd, known_hosts=known_hosts)
    assert f"127.0.0.1:{sshd.port}" in str(caught.value)
    assert "SHA256:" in str(caught.value)  # the fingerprint, to check with the admin
    assert known_hosts.read_text() == ""


def test_unknown_host_key_accepted_explicitly_is_saved(sshd: SSHServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "new" / "known_hosts"
    with direct(sshd, known_hosts=known_hosts, accept_new_host_key=True) as channel:
        assert read_all(channel) == b"connected\n"
    saved = known_hosts.read_text()
    assert saved.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert saved.split()[2] == sshd.known_hosts_line().split()[2]
    with direct(sshd, known_hosts=known_hosts) as channel:  # known now, without accepting anything
        assert read_all(channel) == b"connected\n"
    assert known_hosts.read_text() == saved


def test_changed_host_key_is_refused_and_says_so(sshd: SSHServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.other_host_pubkey}\n")
    for accept in (False, True):  # accepting new keys never accepts a changed one
        with pytest.raises(HostKeyError, match="HOST KEY HAS CHANGED") as caught:
            direct(sshd, known_hosts=known_hosts, accept_new_host_key=accept)
        assert "man-in-the-middle" in str(caught.value)
        assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in str(caught.value)


def test_wrong_user_key_is_an_authentication_failure(sshd: SSHServer) -> None:
    with pytest.raises(AuthenticationFailed, match=f"127.0.0.1:{sshd.port}"):
        direct(sshd, identity_files=[sshd.other_key])


def test_closed_port_is_a_connection_failure(sshd: SSHServer) -> None:
    url = RemoteURL("ssh", None, "127.0.0.1", free_port(), "/unused")
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{url.port}"):
        ParamikoChannel(url, "true", identity_files=[sshd.client_key], known_hosts=sshd.known_hosts)


def test_exit_status_after_close(sshd: SSHServer) -> None:
    channel = direct(sshd, Peer("exit").command())
    assert read_all(channel) == b"bye\n"
    channel.close()
    assert channel.exit_status == 3


# -- ssh_config ---------------------------------------------------------------------------------


def write_config(tmp_path: Path, sshd: SSHServer, alias: str, **extra: str) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(sshd.config_block(alias, **extra) + "\n" + sshd.ssh_config.read_text())
    return config


def test_ssh_config_alias_is_resolved(sshd: SSHServer) -> None:
    url = parse_remote_url("dcsync-test:calib")
    with ParamikoChannel(url, 'echo "$(id -un) $HOME"', config_path=sshd.ssh_config) as channel:
        assert read_all(channel).decode() == f"{sshd.user} {sshd.remote_home}\n"
        assert channel.describe() == "dcsync-test:calib"


def test_the_default_ssh_config_is_read(sshd: SSHServer) -> None:
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"  # a temporary HOME (conftest)
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text(sshd.ssh_config.read_text())
    channel = open_channel("ssh://dcsync-test/data/my calib", remote_dcsync=ARGV_PRINTER)
    assert isinstance(channel, ParamikoChannel)
    assert printed_argv(channel) == ["serve", "--stdio", "--root", "/data/my calib"]


def negotiated_cipher(channel: ParamikoChannel) -> str:
    cipher: str = channel._clients[-1].get_transport().remote_cipher
    return cipher


def test_aes_gcm_is_preferred(sshd: SSHServer) -> None:
    """GCM is paramiko's fast cipher (no MAC computed in Python); sshd offers it by default."""
    with ParamikoChannel(parse_remote_url("dcsync-test:x"), "true", config_path=sshd.ssh_config) as channel:
        assert negotiated_cipher(channel) == "aes128-gcm@openssh.com"


@pytest.mark.parametrize(
    ("ciphers", "expected"),
    [
        ("aes256-ctr,aes128-ctr", "aes256-ctr"),
        ("nonesuch,aes192-ctr", "aes192-ctr"),
        ("+aes256-cbc", "aes128-gcm@openssh.com"),
    ],
)
def test_ssh_config_ciphers_are_honoured(
    sshd: SSHServer, tmp_path: Path, ciphers: str, expected: str
) -> None:
    config = write_config(tmp_path, sshd, "pinned", Ciphers=ciphers)
    with ParamikoChannel(parse_remote_url("pinned:x"), "true", config_path=config) as channel:
        assert negotiated_cipher(channel) == expected


def test_proxy_command(sshd: SSHServer, tmp_path: Path) -> None:
    proxy = f"ssh -F {sshd.ssh_config} -W %h:%p {sshd.alias}"
    config = write_config(tmp_path, sshd, "dcsync-proxied", ProxyCommand=proxy)
    before = accepted_logins(sshd)
    url = parse_remote_url("ssh://dcsync-proxied/x")
    with ParamikoChannel(url, "echo through the proxy", config_path=config) as channel:
        assert read_all(channel) == b"through the proxy\n"
    assert accepted_logins(sshd) - before == 2  # the proxy's login, then ours through it


def test_failing_proxy_command_is_a_connection_failure(sshd: SSHServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, "dcsync-proxied", ProxyCommand="sh -c 'echo proxy broke >&2'")
    with pytest.raises(ConnectionFailed, match="proxy broke"):
        ParamikoChannel(parse_remote_url("dcsync-proxied:x"), "true", config_path=config, connect_timeout=5)


def test_proxy_jump(sshd: SSHServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, "dcsync-jumped", ProxyJump=f"{sshd.alias},{sshd.alias}")
    before = accepted_logins(sshd)
    url = parse_remote_url("ssh://dcsync-jumped/x")
    with ParamikoChannel(url, "echo through two jumps", config_path=config) as channel:
        assert read_all(channel) == b"through two jumps\n"
    assert accepted_logins(sshd) - before == 3  # each hop logs in, then the target


def test_url_user_and_port_override_the_config(sshd: SSHServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, "dcsync-wrong", Port=str(free_port()), User="nobody-here")
    url = parse_remote_url(f"ssh://{sshd.user}@dcsync-wrong:{sshd.port}/x")
    with ParamikoChannel(url, "echo overridden", config_path=config) as channel:
        assert read_all(channel) == b"overridden\n"


def test_missing_explicit_config_is_a_usage_error(sshd: SSHServer, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no-such-config"):
        ParamikoChannel(parse_remote_url("dcsync-test:x"), "true", config_path=tmp_path / "no-such-config")


# -- the system ssh binary --------------------------------------------------------------------------


def system_ssh(config: Path, alias: str, command: str = "echo connected", **options: bool) -> Channel:
    url = parse_remote_url(f"ssh://{alias}/x")
    return SystemSSHChannel(url, command, ssh_command=f"ssh -F {config}", **options)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"UserKnownHostsFile": "EMPTY"}, HostKeyError, "Host key verification failed"),
        ({"UserKnownHostsFile": "OTHER"}, HostKeyError, "HOST KEY HAS CHANGED"),
        ({"IdentityFile": "OTHER_KEY"}, AuthenticationFailed, "Permission denied"),
        ({"Port": "CLOSED"}, ConnectionFailed, "Connection refused"),
    ],
    ids=["unknown-host", "changed-host", "wrong-key", "closed-port"],
)
def test_system_ssh_failures_are_translated(
    sshd: SSHServer, tmp_path: Path, options: dict[str, str], error: type[RemoteError], pattern: str
) -> None:
    files = {
        "EMPTY": tmp_path / "empty_known_hosts",
        "OTHER": tmp_path / "other_known_hosts",
        "OTHER_KEY": sshd.other_key,
    }
    files["EMPTY"].write_text("")
    files["OTHER"].write_text(f"[127.0.0.1]:{sshd.port} {sshd.other_host_pubkey}\n")
    values = {k: str(files[v]) if v in files else v for k, v in options.items()}
    if values.get("Port") == "CLOSED":
        values["Port"] = str(free_port())
    config = write_config(tmp_path, sshd, "dcsync-bad", **values)
    channel = system_ssh(config, "dcsync-bad")
    with pytest.raises(error, match=pattern):
        channel.write(b"hello")  # the protocol writes first...
        channel.read(10)  # ...or reads first: either way the failure is named
    channel.close()


def test_system_ssh_accepts_a_new_host_key_when_asked(sshd: SSHServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    config = write_config(
        tmp_path, sshd, "dcsync-new", UserKnownHostsFile=str(known_hosts), StrictHostKeyChecking="ask"
    )
    with system_ssh(config, "dcsync-new") as channel, pytest.raises(HostKeyError):
        channel.read(10)
    with system_ssh(config, "dcsync-new", accept_new_host_key=True) as channel:
        assert read_all(channel) == b"connected\n"
    assert re.match(rf"\[127\.0\.0\.1\]:{sshd.port} ssh-ed25519 ", known_hosts.read_text())


# -- open_channel ----------------------------------------------------------------------------------


def test_open_channel_runs_a_local_serve(tmp_path: Path) -> None:
    path = str(tmp_path / "my calib")
    channel = open_channel(path, remote_dcsync=ARGV_PRINTER, serve_args=["--read-only"])
    assert isinstance(channel, SubprocessChannel)
    assert printed_argv(channel) == ["serve", "--stdio", "--root", path, "--read-only"]
    channel = open_channel(f"file://{path}", remote_dcsync=ARGV_PRINTER)
    assert printed_argv(channel)[-1] == path
    with open_channel(path) as channel:  # by default this interpreter's dcsync
        assert isinstance(channel, SubprocessChannel)
        assert channel.argv == [sys.executable, "-m", "dcsync", "serve", "--stdio", "--root", path]


def test_open_channel_uses_the_system_ssh_when_asked(
    sshd: SSHServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sshd.url("/data/it's")
    channel = open_channel(url, remote_dcsync=ARGV_PRINTER, ssh_command=sshd.ssh_command)
    assert isinstance(channel, SystemSSHChannel)
    assert printed_argv(channel) == ["serve", "--stdio", "--root", "/data/it's"]
    monkeypatch.setenv("DCSYNC_SSH", sshd.ssh_command)
    channel = open_channel(url, remote_dcsync=ARGV_PRINTER, serve_args=["--read-only"])
    assert isinstance(channel, SystemSSHChannel)
    assert printed_argv(channel) == ["serve", "--stdio", "--root", "/data/it's", "--read-only"]


def test_open_channel_refuses_a_bad_url() -> None:
    with pytest.raises(UsageError, match="ftp://x/y"):
        open_channel("ftp://x/y")
