"""What fetch leaves behind and what partial clones say: detectors fetched but not checked out,
remote names for fetch/pull/push/status, ``--since`` over a real transfer, and diffs against a
partial clone. The scenarios run over every transport, with test_sync.py's central workspace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_sync import (  # noqa: F401  (fixtures used by name)
    CSPAD,
    DETS,
    EPIX,
    JUNGFRAU,
    T0,
    T1,
    T2,
    T_OLD,
    World,
    add,
    assert_same_constants,
    assert_verifies,
    base,
    dcsync_cli,
    get,
    head,
    log,
    make_transport,
    transport,
    world,
)

from dcsync import sync
from dcsync.errors import DetectorNotFound, NotFetched, UsageError
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

NEW = "epix10ka-0009"


def new_on_central(central: World) -> None:
    with central.central.new_detector(NEW) as repo, repo.transaction("first") as tx:
        tx.add("pedestals", np.full((4, 6), 7, np.float32), begin_ns=T0)


# -- fetch of a detector the workspace lacks -------------------------------------------------------


def test_fetch_keeps_a_new_detector_out_of_the_workspace_until_a_pull_checks_it_out(world: World) -> None:  # noqa: F811
    laptop = world.laptop()
    new_on_central(world)
    report = world.t.fetch(laptop)
    assert report.updated[NEW] == (None, head(world.central, NEW))

    # readers see the workspace as before: no file without a HEAD under <dettype>/
    assert laptop.detectors() == DETS
    assert not laptop.detector_path(NEW).exists()
    assert_verifies(laptop)
    [fetched] = laptop.fetched_detectors()
    assert (fetched.detname, fetched.remotes) == (NEW, ("origin",))
    store = HDF5Store(fetched.path)
    try:
        assert HEAD not in store.refs()
        assert store.refs()[remote_ref("origin")] == head(world.central, NEW)
    finally:
        store.close()
    checked = verify_path(fetched.path)
    assert checked.ok and not checked.checked_out and checked.objects > 0, checked.problems
    with pytest.raises(DetectorNotFound, match=f"not checked out: run 'dcsync pull origin --detector {NEW}'"):
        laptop.repository(NEW)
    row = {r.detector: r for r in sync.status(laptop)}[NEW]
    assert (row.head, row.remote_head, row.behind, row.checked_out) == (
        None,
        head(world.central, NEW),
        2,
        False,
    )

    # a pull checks it out: the same file, now with HEAD, linked into place
    pulled = world.t.pull(laptop)
    assert NEW in pulled.fast_forwarded
    assert laptop.detectors() == sorted([*DETS, NEW]) and laptop.fetched_detectors() == []
    assert not fetched.path.exists()
    assert head(laptop, NEW) == head(world.central, NEW)
    assert_same_constants(world.central, laptop, NEW)
    assert_verifies(laptop)
    assert [(r.command, r.ref) for r in log(laptop, NEW)] == [("fetch", "remotes/origin"), ("pull", HEAD)]


def test_a_check_out_cut_short_is_finished_by_the_next_fetch(world: World) -> None:  # noqa: F811
    """A pull killed between moving the fetched copy's HEAD and linking it into place."""
    laptop = world.laptop()
    new_on_central(world)
    world.t.fetch(laptop)
    [fetched] = laptop.fetched_detectors()
    store = HDF5Store(fetched.path)
    try:
        with store.writing():
            tip = store.refs()[remote_ref("origin")]
            store.set_ref(HEAD, None, tip, LogRecord(HEAD, None, tip, "pull", "check out remotes/origin"))
    finally:
        store.close()
    assert laptop.detectors() == DETS
    world.t.fetch(laptop)
    assert laptop.detectors() == sorted([*DETS, NEW]) and not fetched.path.exists()
    assert head(laptop, NEW) == head(world.central, NEW)
    assert_verifies(laptop)


# -- --since over a real transfer ------------------------------------------------------------------


def test_since_fetches_only_what_lookups_from_then_on_return_and_a_rollback_brings_the_old_one(
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    # EPIX pedestals: [T0, end) run 1, [T1, end) run 2, then a newer version of [T1, end)
    newer = add(world.central, EPIX, "pedestals", np.full((352, 384), 5, np.float32), T1)
    with world.central.repository(EPIX) as repo:
        run1 = repo.locate("pedestals", at_ns=T0)
        run2 = next(
            (key, e) for key, e in repo.ranges("pedestals")[-1][1].versions.items() if key != newer.version
        )
    ws, _ = world.t.clone(world.central.root, tmp_path / "partial", detectors=["epix*"], since_ns=T1)
    with ws.repository(EPIX) as repo:
        assert repo.store.has(newer.entry.obj)
        assert not repo.store.has(run1.entry.obj)  # [T0, end) never wins from T1 on
        assert not repo.store.has(run2[1].obj)  # pinned over: no lookup returns it
        with pytest.raises(NotFetched):
            repo.get("pedestals", version=run2[0])
    assert np.array_equal(get(ws, EPIX, "pedestals", T2), get(world.central, EPIX, "pedestals", T2))

    # the central side rolls back to run 2: now a lookup returns it, so the next pull brings it
    with world.central.repository(EPIX) as repo, repo.transaction("rollback") as tx:
        tx.set_default("pedestals", run2[0])
    world.t.pull(ws)
    assert np.array_equal(get(ws, EPIX, "pedestals", T2), get(world.central, EPIX, "pedestals", T2))
    with ws.repository(EPIX) as repo:
        assert repo.locate("pedestals", at_ns=T2).version == run2[0]
        assert not repo.store.has(run1.entry.obj)
    assert_verifies(ws)


# -- diff against a partial clone -----------------------------------------------------------------


def test_a_diff_against_a_partial_clone_compares_only_what_its_filter_covers(
    world: World,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, _ = world.t.clone(
        world.central.root,
        tmp_path / "partial",
        detectors=["epix*", "jungfrau-*"],
        ctypes=["pedestals"],
        since_ns=T1,
    )
    world.t.dial_in_process(monkeypatch)
    plain = sync.diff_sources(str(world.central.root), str(ws.root))
    assert plain.changes == []  # cspad is not "removed": the clone never took it
    assert plain.left_out is not None
    assert (plain.left_out.detectors, plain.left_out.changes) == ([CSPAD], 0)
    assert plain.to_json()["left_out"]["filters"][0]["ctypes"] == ["pedestals"]

    shown = add(world.central, EPIX, "pedestals", np.full((352, 384), 6, np.float32), T2)
    add(world.central, EPIX, "pixel_mask", np.zeros((352, 384), bool), T2)  # another ctype
    add(world.central, EPIX, "pedestals", np.full((352, 384), 1, np.float32), T0, T1)  # before --since
    add(world.central, JUNGFRAU, "pedestals", np.full((2, 64, 128), 2, np.float32), T_OLD, T0)
    for report in (
        sync.diff_sources("origin", str(ws.root), here=ws),  # origin's own filter applies
        sync.diff_sources(str(world.central.root), str(ws.root)),  # so does the clone's
        sync.diff_sources(str(ws.root), str(world.central.root)),
    ):
        assert {(c.detname, c.ctype, c.range) for c in report.changes} == {(EPIX, "pedestals", shown.range)}
        assert report.left_out is not None and len(report.left_out.scopes) == 1
        assert report.left_out.detectors == [CSPAD]
        # pixel_mask: its new range, added and default; the two ranges before T1: added, default
        # each, and the one that is new here
        assert report.left_out.changes == 8
    # --values where the clone's side is a version it never fetched: one a pinned default hid
    # when it came, pinned here by hand afterwards
    hidden = add(world.central, EPIX, "pedestals", np.full((352, 384), 8, np.float32), T1, make_default=False)
    world.t.pull(ws)
    with ws.repository(EPIX) as repo:
        assert not repo.store.has(hidden.entry.obj)
        with repo.transaction("pin the hidden one") as tx:
            tx.set_default("pedestals", hidden.version)
    valued = sync.diff_sources("origin", str(ws.root), here=ws, values=True)
    [i] = [i for i, c in enumerate(valued.changes) if c.kind == "default" and c.range == hidden.range]
    assert valued.values[i] == {"comparable": False, "not_fetched": True}

    # a remote with no filter, compared with another: nothing left out, everything shown
    full = sync.diff_sources(str(world.central.root), str(world.central.root))
    assert full.left_out is None and full.to_json()["left_out"] is None


# -- the command line ------------------------------------------------------------------------------


def test_the_cli_shows_fetched_detectors_as_such_and_fetch_wants_a_remote_name(
    request: pytest.FixtureRequest,
    base: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World(make_transport("pipe", request), base, tmp_path)  # noqa: F811
    laptop = world.laptop()
    new_on_central(world)
    dcsync_cli("-C", laptop.root, "fetch", "-q")
    hint = f"run 'dcsync pull origin --detector {NEW}'"

    listed = json.loads(dcsync_cli("-C", laptop.root, "ls", "--json").stdout)["detectors"]
    row = {r["detector"]: r for r in listed}[NEW]
    assert (row["checked_out"], row["ctypes"], row["fetched_from"]) == (False, None, ["origin"])
    assert all(r["checked_out"] for r in listed if r["detector"] != NEW)
    assert "fetched, not checked out" in dcsync_cli("-C", laptop.root, "ls").stdout
    assert hint in dcsync_cli("-C", laptop.root, "log", NEW).stdout
    assert json.loads(dcsync_cli("-C", laptop.root, "log", NEW, "--json").stdout)["checked_out"] is False
    dcsync_cli("-C", laptop.root, "log")
    verified = json.loads(dcsync_cli("-C", laptop.root, "verify", "--json").stdout)
    assert verified["ok"] and [r["checked_out"] for r in verified["repositories"]].count(False) == 1
    assert "fetched, not checked out" in dcsync_cli("-C", laptop.root, "verify", NEW).stdout
    assert "fetched, not checked out" in dcsync_cli("-C", laptop.root, "status").stdout
    assert hint in dcsync_cli("-C", laptop.root, "get", NEW, "pedestals", expect=3).stderr

    # a path or URL that is no remote of this workspace: exit 2, nothing fetched, nothing created
    other = tmp_path / "other"
    Workspace.init(other)
    before = sorted(p.relative_to(laptop.root) for p in laptop.root.rglob("*"))
    for target in (str(other), str(world.central.root / "nowhere")):
        for command in ("fetch", "pull", "push", "status"):
            failed = dcsync_cli("-C", laptop.root, command, target, expect=2)
            assert "dcsync remote add NAME" in failed.stderr
    assert sorted(p.relative_to(laptop.root) for p in laptop.root.rglob("*")) == before
    with pytest.raises(UsageError):
        sync.fetch(laptop, str(other))
    # origin's own location, even relative, is origin
    monkeypatch.chdir(tmp_path)
    assert NEW in dcsync_cli("-C", laptop.root, "pull", os.path.relpath(world.central.root), "-d", NEW).stdout
    assert laptop.detector_path(NEW).is_file() and laptop.fetched_detectors() == []

    # diff against the partial clone says what it left out
    partial = tmp_path / "partial"
    dcsync_cli("clone", world.central.root, partial, "-q", "--detector", "epix*")
    stat = dcsync_cli("diff", world.central.root, partial, "--stat").stdout
    assert "no differences" in stat and "left out" in stat and CSPAD in stat and JUNGFRAU in stat
