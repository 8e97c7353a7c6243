"""Promotion (experiment → central repository) on one machine: what is chosen (by time, by version,
by ctype), what is copied (ranges, parameters, provenance, the pinned default), --dry-run,
idempotency, the target's ACL and pre-receive hooks, a remote target over the pipe transport, the
CLI, and the audit fields in ``dcsync log``.

Promotion between real Unix users over SSH is in test_access_e2e.py.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sshd import SSHServer
from test_sync import ssh_home
from typer.testing import CliRunner

from dcsync.cli.main import app
from dcsync.cli.output import short
from dcsync.errors import AccessDenied, HookRejected, UsageError
from dcsync.model.times import parse_time
from dcsync.sync.promote import PromoteReport, promote
from dcsync.workspace import acl as acl_module
from dcsync.workspace import config
from dcsync.workspace.acl import current_identity
from dcsync.workspace.workspace import Workspace

DET = "epix100a-1"
T0 = parse_time("2026-01-01T00:00:00Z")
T1 = parse_time("2026-02-01T00:00:00Z")
IN_A = parse_time("2026-01-15T00:00:00Z")  # inside the first pedestal range
IN_B = parse_time("2026-03-01T00:00:00Z")  # inside the second


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _h5_files(root: Path) -> dict[str, str]:
    return {k: v for k, v in _files(root).items() if not k.startswith(".dcsync/")}


@pytest.fixture
def xpp(tmp_path: Path) -> dict[str, Any]:
    """An experiment area: pedestals in two ranges (the first with a bad version added last but the
    good one pinned), pixel_status; parameters on ranges and versions."""
    ws = Workspace.init(tmp_path / "xpp", "experiment", group="xpp")
    ws.new_detector(DET).close()
    with ws.repository(DET) as repo:
        with repo.transaction("dark run 10") as tx:
            good = tx.add(
                "pedestals", np.full((2, 3), 2.0, np.float32), begin_ns=T0, end_ns=T1, pars={"run": 10}
            )
            tx.set_pars({"runs": "10-12", "gain": "high"}, ctype="pedestals", range=good.range)
            status = tx.add("pixel_status", np.zeros((2, 3), np.uint16), begin_ns=T0)
        with repo.transaction("dark run 11 (bad)") as tx:
            bad = tx.add(
                "pedestals", np.full((2, 3), np.nan, np.float32), begin_ns=T0, end_ns=T1, pars={"run": 11}
            )
        with repo.transaction("back to run 10") as tx:
            tx.set_default("pedestals", good.version)
        with repo.transaction("dark run 20") as tx:
            later = tx.add("pedestals", np.full((2, 3), 3.0, np.float32), begin_ns=T1, pars={"run": 20})
        head = str(repo.head())
    return {"ws": ws, "good": good, "bad": bad, "status": status, "later": later, "head": head}


@pytest.fixture
def central(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "central", "repository")  # we own it: we may write


def _target(ws: Workspace) -> Any:
    return ws.repository(DET)


def test_promote_by_time_copies_ranges_pars_provenance_and_pins(
    xpp: dict[str, Any], central: Workspace
) -> None:
    src: Workspace = xpp["ws"]
    report = promote([DET], str(src.root), str(central.root), at_ns=IN_A)
    assert [(p.ctype, p.version, p.action) for p in report.picks] == [
        ("pedestals", xpp["good"].version, "promote"),  # the pinned default, not the latest
        ("pixel_status", xpp["status"].version, "promote"),
    ]
    assert list(report.commits) == [DET]
    with _target(central) as repo:
        peds = repo.get("pedestals", at_ns=IN_A)
        assert (peds.begin, peds.end, peds.pinned) == (T0, T1, True)
        assert peds.value.dtype == np.float32 and float(peds.value[0, 0]) == 2.0
        assert peds.obj == xpp["good"].entry.obj  # the same payload, byte for byte
        assert peds.entry.pars == {"run": 10}
        assert peds.entry.tsprod == xpp["good"].entry.tsprod
        assert dict(repo.find_range("pedestals", peds.range)[1].pars) == {"runs": "10-12", "gain": "high"}
        origin = peds.entry.origin
        assert origin["location"] == str(src.root)
        assert origin["detector"] == DET and origin["commit"] == xpp["head"]
        assert origin["version"] == xpp["good"].version
        assert origin["author"] == xpp["good"].entry.author
        assert origin["promoted_by"] == current_identity().user and origin["promoted_at"]
        status = repo.get("pixel_status", at_ns=IN_A)
        assert status.value.dtype == np.uint16 and status.end is None and status.pinned
        assert [len(t.versions) for _, t in repo.ranges("pedestals")] == [1]  # run 20 not chosen
        record = repo.log()[-1]
        assert record.command == "promote" and record.new == report.commits[DET]
        assert record.extra["promote"] == {"from": str(src.root), "commit": xpp["head"]}
        assert repo.commit().meta["promote"]["commit"] == xpp["head"]


def test_promote_by_version_with_ctype_filter(xpp: dict[str, Any], central: Workspace) -> None:
    src: Workspace = xpp["ws"]
    report = promote(
        [DET], str(src.root), str(central.root), ctypes=["pedestals"], version=xpp["later"].version[:6]
    )
    assert [(p.ctype, p.range, p.version) for p in report.picks] == [
        ("pedestals", xpp["later"].range, xpp["later"].version)
    ]
    with _target(central) as repo:
        assert repo.ctypes() == ["pedestals"]
        later = repo.get("pedestals", at_ns=IN_B)
        assert (later.begin, later.end, float(later.value[0, 0])) == (T1, None, 3.0)
        with pytest.raises(KeyError):
            repo.get("pedestals", at_ns=IN_A)  # the other range was not asked for
    # now the first range, by time and for pedestals only: pixel_status stays behind
    promote([DET], str(src.root), str(central.root), ctypes=["pedestals"], at_ns=IN_A)
    with _target(central) as repo:
        assert repo.ctypes() == ["pedestals"] and float(repo.get("pedestals", at_ns=IN_A).value[0, 0]) == 2.0
    # the bad version explicitly: copied, and pinned in the target (that is what promotion does)
    promote([DET], str(src.root), str(central.root), ctypes=["pedestals"], version=xpp["bad"].version)
    with _target(central) as repo:
        assert np.isnan(repo.get("pedestals", at_ns=IN_A).value).all()


def test_bad_choices_are_clear_errors(xpp: dict[str, Any], central: Workspace) -> None:
    src = str(xpp["ws"].root)
    with pytest.raises(UsageError, match="not both"):
        promote([DET], src, str(central.root), version="ab", at_ns=IN_A)
    with pytest.raises(KeyError, match="no ctype 'geometry'"):
        promote([DET], src, str(central.root), ctypes=["geometry"])
    with pytest.raises(KeyError, match="no version"):
        promote([DET], src, str(central.root), ctypes=["pedestals"], version="zzzz")
    with pytest.raises(KeyError, match="no detector jungfrau-1"):
        promote(["jungfrau-1"], src, str(central.root))
    assert central.detectors() == []


def test_dry_run_says_what_would_change_and_changes_nothing(xpp: dict[str, Any], central: Workspace) -> None:
    src: Workspace = xpp["ws"]
    before = _files(central.root)
    report = promote([DET], str(src.root), str(central.root), at_ns=IN_A, dry_run=True)
    assert report.dry_run and report.commits == {}
    assert [p.action for p in report.picks] == ["promote", "promote"]
    assert _files(central.root) == before and central.detectors() == []
    real = promote([DET], str(src.root), str(central.root), at_ns=IN_A)
    assert [p.to_json() for p in real.picks] == [p.to_json() for p in report.picks]  # it did as it said
    after = _files(central.root)
    again = promote([DET], str(src.root), str(central.root), at_ns=IN_A, dry_run=True)
    assert all(p.action.startswith("skip: already in the target as ") for p in again.picks)
    assert _files(central.root) == after


def test_promotion_is_idempotent(xpp: dict[str, Any], central: Workspace) -> None:
    src: Workspace = xpp["ws"]
    first = promote([DET], str(src.root), str(central.root), at_ns=IN_A)
    after = _files(central.root)
    second = promote([DET], str(src.root), str(central.root), at_ns=IN_A)
    assert second.commits == {} and second.promoted == []
    with _target(central) as repo:
        keys = {p.ctype: repo.get(p.ctype, at_ns=IN_A).version for p in first.picks}
    assert [p.action for p in second.picks] == [
        f"skip: already in the target as {keys[p.ctype]}" for p in second.picks
    ]
    assert _files(central.root) == after
    # a relative path to the same source is the same source
    third = promote([DET], os.path.relpath(src.root), str(central.root), at_ns=IN_A)
    assert third.commits == {}


def test_promotion_goes_through_the_target_acl(xpp: dict[str, Any], central: Workspace) -> None:
    src: Workspace = xpp["ws"]
    acl = central.acl()
    acl.owner = "someone-else"
    acl_module.save(central.root, acl, current_identity(), "hand over")
    before = _files(central.root)
    with pytest.raises(AccessDenied, match=f"{current_identity().user} may not add on {DET}"):
        promote([DET], str(src.root), str(central.root), at_ns=IN_A)  # a new detector there
    assert _files(central.root) == before and central.detectors() == []
    # an existing detector: created by its owner, then our promotion is refused by change
    acl.owner = current_identity().user
    acl_module.save(central.root, acl, current_identity(), "take back")
    central.new_detector(DET).close()
    acl.owner = "someone-else"
    acl_module.save(central.root, acl, current_identity(), "hand over")
    before = _files(central.root)
    with pytest.raises(AccessDenied, match=f"may not (add|set-default) on {DET} pedestals"):
        promote([DET], str(src.root), str(central.root), at_ns=IN_A)
    assert _files(central.root) == before


def _hook(ws: Workspace, phase: str, script: str) -> Path:
    path = ws.root / ".dcsync" / "hooks" / phase
    path.write_text(script, encoding="utf-8")
    path.chmod(0o755)
    return path


REJECT_NAN = """#!/usr/bin/env python3
import json, sys
import numpy as np
event = json.load(sys.stdin)
with open(sys.argv[0] + ".seen", "a") as fh:
    fh.write(json.dumps(event) + "\\n")
for change in event["changes"]:
    if change.get("payload") and np.isnan(np.load(change["payload"])).any():
        print(f"NaN in {change['ctype']} {change['version']}")
        sys.exit(1)
"""


@pytest.fixture
def guarded_central(central: Workspace) -> Iterator[Workspace]:
    """A central repository whose pre-receive hook refuses NaN (and records what it saw)."""
    _hook(central, "pre-receive", REJECT_NAN)
    _hook(central, "pre-commit", "#!/bin/sh\necho 'local writes only' >&2\nexit 1\n")
    yield central


def _seen(ws: Workspace) -> list[dict[str, Any]]:
    path = ws.root / ".dcsync" / "hooks" / "pre-receive.seen"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_promotion_goes_through_the_target_hooks(xpp: dict[str, Any], guarded_central: Workspace) -> None:
    src: Workspace = xpp["ws"]
    central = guarded_central
    before = _files(central.root)
    with pytest.raises(HookRejected, match="NaN in pedestals"):
        promote([DET], str(src.root), str(central.root), ctypes=["pedestals"], version=xpp["bad"].version)
    assert central.detectors() == []  # a refused promotion of a new detector leaves no file
    assert {k: v for k, v in _files(central.root).items() if not k.endswith(".seen")} == before
    event = _seen(central)[-1]
    assert event["hook"] == "pre-receive" and event["command"] == "promote"  # not pre-commit
    added = [c for c in event["changes"] if c["change"] == "added"]
    assert [c["origin"]["version"] for c in added] == [xpp["bad"].version]
    # the good ones pass the same hook; the bad one is still refused on top of them
    promote([DET], str(src.root), str(central.root), at_ns=IN_A)
    after = _h5_files(central.root)
    with pytest.raises(HookRejected):
        promote([DET], str(src.root), str(central.root), ctypes=["pedestals"], version=xpp["bad"].version)
    assert _h5_files(central.root) == after
    with _target(central) as repo:
        assert float(repo.get("pedestals", at_ns=IN_A).value[0, 0]) == 2.0


# -- a remote target over the pipe transport ---------------------------------------------------------


def _url(ws: Workspace) -> str:
    return f"file://{ws.root}"


def test_promote_to_a_remote_target(xpp: dict[str, Any], central: Workspace) -> None:
    src: Workspace = xpp["ws"]
    dry = promote([DET], str(src.root), _url(central), at_ns=IN_A, dry_run=True)
    assert [p.action for p in dry.picks] == ["promote", "promote"] and central.detectors() == []
    report = promote([DET], str(src.root), _url(central), at_ns=IN_A, message="good pedestals for run 10")
    assert list(report.commits) == [DET]
    with _target(central) as repo:
        assert repo.head() == report.commits[DET]  # the scratch clone's commit, pushed as is
        peds = repo.get("pedestals", at_ns=IN_A)
        assert float(peds.value[0, 0]) == 2.0 and peds.pinned and peds.end == T1
        assert peds.entry.origin["location"] == str(src.root) and peds.entry.origin["commit"] == xpp["head"]
        assert dict(repo.find_range("pedestals", peds.range)[1].pars) == {"runs": "10-12", "gain": "high"}
        record = repo.log()[-1]
        assert record.command == "push received" and record.message == "good pedestals for run 10"
        assert record.extra["promoted_from"] == [{"from": str(src.root), "commit": xpp["head"]}]
        assert record.extra["served_as"] == current_identity().user
    after = _files(central.root)
    again = promote([DET], str(src.root), _url(central), at_ns=IN_A)
    assert again.commits == {} and all(p.action.startswith("skip") for p in again.picks)
    assert _files(central.root) == after


def test_promote_to_a_remote_target_through_its_hooks_and_acl(
    xpp: dict[str, Any], guarded_central: Workspace
) -> None:
    src: Workspace = xpp["ws"]
    central = guarded_central
    promote([DET], str(src.root), _url(central), at_ns=IN_A)
    before = _h5_files(central.root)
    with pytest.raises(HookRejected, match="NaN in pedestals"):
        promote([DET], str(src.root), _url(central), ctypes=["pedestals"], version=xpp["bad"].version)
    assert _h5_files(central.root) == before
    assert _seen(central)[-1]["command"] == "push"
    acl = central.acl()
    acl.owner = "someone-else"
    acl_module.save(central.root, acl, current_identity(), "hand over")
    with pytest.raises(AccessDenied, match=f"{current_identity().user} may not"):
        promote([DET], str(src.root), _url(central), at_ns=IN_B)
    assert _h5_files(central.root) == before


def test_a_refused_remote_promotion_of_a_new_detector_leaves_no_file(
    xpp: dict[str, Any], guarded_central: Workspace
) -> None:
    with pytest.raises(HookRejected):
        promote(
            [DET],
            str(xpp["ws"].root),
            _url(guarded_central),
            ctypes=["pedestals"],
            version=xpp["bad"].version,
        )
    assert guarded_central.detectors() == []


# -- the CLI and the log -----------------------------------------------------------------------------


def _cli(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def test_cli_promote_json_dry_run_and_log(xpp: dict[str, Any], central: Workspace, monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    src: Workspace = xpp["ws"]
    common = [DET, "--from", src.root, "--to", central.root, "--at", "2026-01-15T00:00:00Z"]
    dry = _cli("promote", *common, "--ctype", "pedestals", "--dry-run")
    good = xpp["good"]
    assert dry.output.splitlines() == [
        f"{DET} pedestals {good.range} {good.version} ({short(good.entry.obj)}): would promote"
    ]
    assert central.detectors() == []
    doc = json.loads(_cli("promote", *common, "--ctype", "pedestals", "--json").stdout)
    assert doc["from"] == str(src.root) and doc["dry_run"] is False
    assert [(p["ctype"], p["version"], p["action"]) for p in doc["picks"]] == [
        ("pedestals", xpp["good"].version, "promote")
    ]
    assert (
        doc["picks"][0]["begin"] == "2026-01-01T00:00:00Z"
        and doc["picks"][0]["end"] == "2026-02-01T00:00:00Z"
    )
    assert list(doc["commits"]) == [DET]
    again = json.loads(_cli("promote", *common, "--ctype", "pedestals", "--json").stdout)
    assert again["commits"] == {} and again["picks"][0]["action"].startswith("skip")
    text = _cli(
        "promote", DET, "--from", src.root, "--to", central.root, "--version", xpp["later"].version
    ).output
    assert "promoted" in text and f"{DET}: commit" in text
    _cli("promote", DET, "--from", src.root, "--to", central.root, "--version", "x", "--at", "now", code=2)

    entries = json.loads(_cli("-C", central.root, "log", DET, "--json").stdout)["entries"]
    promotions = [e for e in entries if e["command"] == "promote"]
    assert len(promotions) == 2
    newest = promotions[0]
    assert newest["extra"]["promote"] == {"from": str(src.root), "commit": xpp["head"]}
    assert newest["audit"] == f"promoted from {src.root} commit {short(xpp['head'])}"
    table = _cli("-C", central.root, "log", DET).output
    assert "promoted from" in table


def test_cli_promote_between_named_remotes_and_push_audit(
    xpp: dict[str, Any], central: Workspace, tmp_path: Path, monkeypatch: Any
) -> None:
    """From a workspace whose remotes name both ends: provenance records the URL, not the name."""
    src: Workspace = xpp["ws"]
    desk = Workspace.init(tmp_path / "desk")
    config.add_remote(desk, config.RemoteConfig("xpp", str(src.root)))
    config.add_remote(desk, config.RemoteConfig("central", _url(central)))
    monkeypatch.chdir(desk.root)
    doc = json.loads(
        _cli("promote", DET, "--from", "xpp", "--to", "central", "--at", "2026-01-15", "--json").stdout
    )
    assert doc["from"] == "xpp" and doc["to"] == "central" and list(doc["commits"]) == [DET]
    entries = json.loads(_cli("-C", central.root, "log", "--json").stdout)["entries"]
    received = [e for e in entries if e["command"] == "push received"]
    assert len(received) == 1
    extra = received[0]["extra"]
    assert extra["claimed_user"] == current_identity().user and extra["claimed_host"]
    assert extra["served_as"] == current_identity().user
    assert extra["promoted_from"] == [{"from": str(src.root), "commit": xpp["head"]}]
    audit = received[0]["audit"]
    claimed = f"{extra['claimed_user']}@{extra['claimed_host']}"
    assert audit.startswith(f"pushed by {extra['served_as']} (client claimed {claimed})")
    assert audit.endswith(f"; promoted from {src.root} commit {short(xpp['head'])}")
    with _target(central) as repo:
        assert repo.get("pedestals", at_ns=IN_A).entry.origin["location"] == str(src.root)


def test_report_json_shape(xpp: dict[str, Any], central: Workspace) -> None:
    report = promote([DET], str(xpp["ws"].root), str(central.root), at_ns=IN_A, dry_run=True)
    assert isinstance(report, PromoteReport)
    doc = report.to_json()
    assert set(doc) == {"from", "to", "dry_run", "picks", "commits", "promoted_by"}
    assert set(doc["picks"][0]) == {
        "detector",
        "ctype",
        "range",
        "begin",
        "end",
        "version",
        "target_version",
        "object",
        "action",
    }


# -- provenance: the key the promoter saw, the identity the target authenticated ---------------------


def _claim(monkeypatch: Any, name: str) -> None:
    """Make this process's user *name* (what getpass reports, from the environment) differ from
    its OS identity: a client's name for itself is only a claim."""
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, name)
    assert getpass.getuser() == name != current_identity().user


def _check_provenance(repo: Any, xpp: dict[str, Any], who: str, claimed: str) -> None:
    good = xpp["good"]
    peds = repo.get("pedestals", at_ns=IN_A)
    assert peds.version == good.version  # the key the promoter chose by
    origin = peds.entry.origin
    assert (origin["version"], origin["author"]) == (good.version, good.entry.author)
    assert origin["promoted_by"] == who and origin["claimed_by"] == claimed
    assert peds.entry.author == who and repo.commit().author == who  # not the claimed name


def test_a_local_promotion_keeps_the_key_and_records_the_os_identity(
    xpp: dict[str, Any], guarded_central: Workspace, monkeypatch: Any
) -> None:
    _claim(monkeypatch, "mallory")
    me = current_identity().user
    src: Workspace = xpp["ws"]
    good = xpp["good"]
    report = promote([DET], str(src.root), str(guarded_central.root), at_ns=IN_A)
    assert report.promoted_by == me
    peds = next(p for p in report.picks if p.ctype == "pedestals")
    assert (peds.version, peds.target_version, peds.label) == (good.version, good.version, good.version)
    with _target(guarded_central) as repo:
        _check_provenance(repo, xpp, me, "mallory")
        assert "versions" not in repo.commit().meta["promote"]  # nothing renamed
    event = _seen(guarded_central)[-1]
    change = next(c for c in event["changes"] if c["ctype"] == "pedestals" and c["change"] == "added")
    assert change["version"] == change["origin"]["version"] == good.version  # the hook's message names it
    assert event["user"] == me == change["origin"]["promoted_by"]


def test_a_taken_key_gets_a_fresh_one_and_both_are_shown_everywhere(
    xpp: dict[str, Any], guarded_central: Workspace, monkeypatch: Any
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    src: Workspace = xpp["ws"]
    good = xpp["good"]
    central = guarded_central
    (central.root / ".dcsync" / "hooks" / "pre-commit").unlink()
    central.new_detector(DET).close()
    with _target(central) as repo, repo.transaction("another version, by chance the same key") as tx:
        tx.add("pedestals", np.zeros((2, 3), np.float32), "2025-01-01", version=good.version)
    doc = json.loads(
        _cli(
            "promote", DET, "--from", src.root, "--to", central.root, "--version", good.version, "--json"
        ).stdout
    )
    [pick] = doc["picks"]
    new = pick["target_version"]
    assert pick["version"] == good.version and new not in (None, good.version) and pick["action"] == "promote"
    with _target(central) as repo:
        peds = repo.get("pedestals", at_ns=IN_A)
        assert peds.version == new and peds.entry.origin["version"] == good.version
        assert repo.commit().meta["promote"]["versions"] == {new: good.version}
        entry = json.loads(_cli("-C", central.root, "log", DET, "--json").stdout)["entries"][0]
        assert entry["extra"]["promote"]["versions"] == {new: good.version}
    change = next(c for c in _seen(central)[-1]["changes"] if c.get("version") == new)
    assert change["origin"]["version"] == good.version
    text = _cli("promote", DET, "--from", src.root, "--to", central.root, "--version", good.version).output
    assert f"{new}, promoted from {good.version}" in text and "skip: already in the target" in text


def test_a_remote_promotion_records_the_identity_the_server_authenticated(
    xpp: dict[str, Any], central: Workspace, monkeypatch: Any
) -> None:
    _claim(monkeypatch, "mallory")  # the client says it is mallory; the server knows better
    me = current_identity().user
    report = promote([DET], str(xpp["ws"].root), _url(central), at_ns=IN_A)
    assert report.promoted_by == me
    assert [p.target_version for p in report.picks] == [p.version for p in report.picks]
    with _target(central) as repo:
        _check_provenance(repo, xpp, me, "mallory")
        record = repo.log()[-1]
        assert (record.extra["served_as"], record.extra["claimed_user"]) == (me, "mallory")


# -- ad-hoc URLs: --remote-dcsync and --ssh, over the real sshd -------------------------------------


def test_promote_between_ssh_urls_with_remote_dcsync_and_ssh(
    xpp: dict[str, Any], central: Workspace, sshd: SSHServer, monkeypatch: Any
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    src: Workspace = xpp["ws"]
    good = xpp["good"]
    reach = ["--remote-dcsync", sshd.remote_dcsync, "--ssh", sshd.ssh_command]
    common = [DET, "--from", sshd.url(str(src.root)), "--to", sshd.url(str(central.root)), *reach]
    dry = _cli("promote", *common, "--ctype", "pedestals", "--at", "2026-01-15", "--dry-run").output
    assert f"{good.version} ({short(good.entry.obj)}): would promote" in dry
    doc = json.loads(_cli("promote", *common, "--at", "2026-01-15", "--json").stdout)
    assert list(doc["commits"]) == [DET] and doc["promoted_by"] == sshd.user
    with _target(central) as repo:
        peds = repo.get("pedestals", at_ns=IN_A)
        assert peds.version == good.version and peds.entry.origin["promoted_by"] == sshd.user
        assert peds.entry.origin["location"] == sshd.url(str(src.root))
        assert repo.log()[-1].extra["served_as"] == sshd.user
    again = json.loads(_cli("promote", *common, "--at", "2026-01-15", "--json").stdout)
    assert again["commits"] == {} and all(p["action"].startswith("skip") for p in again["picks"])


def test_promote_to_an_ssh_url_through_paramiko(
    xpp: dict[str, Any], central: Workspace, sshd: SSHServer
) -> None:
    ssh_home(sshd)
    url = sshd.url(str(central.root), alias=False)
    report = promote(
        [DET], str(xpp["ws"].root), url, version=xpp["later"].version, remote_dcsync=sshd.remote_dcsync
    )
    assert list(report.commits) == [DET] and report.promoted_by == sshd.user
    with _target(central) as repo:
        assert repo.get("pedestals", at_ns=IN_B).version == xpp["later"].version
