"""Who and where this process is: the name records carry (a claim the environment makes) and the
effective user that access rests on, each looked up in one place (:mod:`dcsync.model.identity`)."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest
from helpers.forked import run_as

from dcsync.model.identity import current_host, current_user, effective_user
from dcsync.store.locking import FileLock, write_denied
from dcsync.store.refs import LogRecord
from dcsync.workspace.acl import current_identity

ME = pwd.getpwuid(os.geteuid()).pw_name


def test_records_carry_the_name_the_environment_gives_access_rests_on_the_effective_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOGNAME", "claimed-name")
    assert current_user() == "claimed-name" and current_host() == socket.gethostname()
    assert effective_user() == ME == current_identity().user  # the environment does not move it
    record = LogRecord("HEAD", None, None, "test")
    assert (record.user, record.host) == ("claimed-name", socket.gethostname())
    with FileLock(tmp_path / "file.h5") as lock:
        held = json.loads(Path(lock.lock_path).read_text())
    assert (held["user"], held["host"]) == ("claimed-name", socket.gethostname())
    assert f"you (user {ME}) may not write" in str(write_denied(tmp_path / "file.h5", "read-only"))


def _as_uid(uid: int) -> list[object]:
    """The lookups as a forked child sees them once it is ``uid`` (with that gid and no other group)
    and its environment names nobody. A fork: this interpreter lives under /root, which other uids
    cannot reach, and every module it needs is imported already."""

    def lookups() -> list[object]:
        for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
            os.environ.pop(name, None)
        who = current_identity()
        return [current_user(), effective_user(), who.user, sorted(who.groups)]

    return list(run_as(uid, uid, lookups))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: becomes a uid without a passwd entry")
def test_a_uid_with_no_name_is_named_by_its_number() -> None:
    """A container's process with neither a passwd entry nor ``$USER``: every lookup says its uid
    (and gid) rather than failing or making a name up."""
    uid = 54321
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    assert _as_uid(uid) == [str(uid), str(uid), str(uid), [str(uid)]]
