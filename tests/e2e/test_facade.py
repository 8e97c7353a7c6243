"""The design's facade opened the design's way: ``DCStore(cpath, detname)`` with ``cpath`` a calib
directory or a detector's file, and a name that must match the file (its own name or an alias)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dcsync.errors import DetectorNotFound, NotARepository, UsageError, WorkspaceNotFound
from dcsync.facade import DCStore
from dcsync.workspace.workspace import Workspace

DET = "epix100a-1"
OTHER = "jungfrau-2"
VALUE = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "calib", "local")
    for det, alias in ((DET, "Camera1"), (OTHER, "XppGon.0:Jungfrau.0")):
        with ws.new_detector(det, alias=alias) as repo, repo.transaction("t") as tx:
            tx.add("pedestals", VALUE if det == DET else VALUE + 1, begin="2024-01-01")
    return ws


def _pedestals(cs: DCStore) -> np.ndarray:
    with cs:
        value = cs.get("pedestals", "2024-06-01")
        assert isinstance(value, np.ndarray)
        return value


@pytest.mark.parametrize("name", [DET, "Camera1"])
def test_a_file_and_its_name_or_alias(ws: Workspace, name: str) -> None:
    np.testing.assert_array_equal(_pedestals(DCStore(ws.detector_path(DET), name)), VALUE)
    np.testing.assert_array_equal(_pedestals(DCStore(str(ws.detector_path(DET)), name)), VALUE)


def test_a_calib_directory_and_a_name_or_alias(ws: Workspace) -> None:
    np.testing.assert_array_equal(_pedestals(DCStore(ws.root, "Camera1")), VALUE)
    np.testing.assert_array_equal(_pedestals(DCStore(str(ws.root), DET)), VALUE)
    np.testing.assert_array_equal(_pedestals(DCStore(ws, OTHER)), VALUE + 1)
    np.testing.assert_array_equal(_pedestals(DCStore(ws.detector_path(DET))), VALUE)  # the file alone


def test_a_name_that_is_not_the_files_is_refused(ws: Workspace) -> None:
    path = ws.detector_path(DET)
    with pytest.raises(DetectorNotFound, match=rf"holds detector {DET} \(aliases: Camera1\), not '{OTHER}'"):
        DCStore(path, OTHER)
    with pytest.raises(DetectorNotFound, match=f"alias of {OTHER}"):
        DCStore(path, "XppGon.0:Jungfrau.0")  # an alias, of another detector
    with pytest.raises(DetectorNotFound, match="not 'Nonesuch'"):
        DCStore(path, "Nonesuch")


def test_a_file_outside_any_workspace_matches_only_its_own_name(ws: Workspace, tmp_path: Path) -> None:
    loose = tmp_path / "loose" / f"{DET}.h5"
    loose.parent.mkdir()
    shutil.copy(ws.detector_path(DET), loose)
    np.testing.assert_array_equal(_pedestals(DCStore(loose, DET)), VALUE)
    with pytest.raises(DetectorNotFound, match=f"holds detector {DET}, not 'Camera1'"):
        DCStore(loose, "Camera1")  # no workspace, so no aliases to match


def test_what_is_neither(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFound):
        DCStore(tmp_path / "nowhere", DET)
    with pytest.raises(NotARepository):
        DCStore(tmp_path / "nowhere.h5")
    with pytest.raises(UsageError, match="needs a detector name"):
        DCStore(ws)
