"""The server's session loop (dcsync.sync.server): only a hello that succeeded greets a session."""

from __future__ import annotations

from pathlib import Path

from dcsync.sync.protocol import hello_args, read_frame, read_preamble, write_frame
from dcsync.sync.server import Server
from dcsync.transport.local import InProcessChannel
from dcsync.workspace.workspace import Workspace


def test_a_refused_hello_does_not_open_the_session(tmp_path: Path) -> None:
    """A hello refused for its hash algorithm (IncompatiblePeer, which leaves the stream in step)
    keeps the session waiting for a hello: a later request of another method is refused too."""
    ws = Workspace.init(tmp_path / "served", kind="repository")
    server = Server(ws.root)
    channel = InProcessChannel(server.serve, description="test server")
    try:
        read_preamble(channel.read, peer="test server")
        bad = {**hello_args("dcsync test", "tester", "here"), "hash": "sha1"}
        write_frame(channel.write, {"i": 1, "m": "hello", "a": bad})
        assert read_frame(channel.read)["e"]["code"] == "remote.incompatible"
        write_frame(channel.write, {"i": 2, "m": "heads", "a": {}})
        answer = read_frame(channel.read)
        assert answer["e"]["code"] == "remote.protocol", answer
        assert "first request must be hello" in answer["e"]["message"]
    finally:
        channel.close()
        server.close()
