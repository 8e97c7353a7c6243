"""Errors that say what is missing: an alias, a remote, a detector, a ctype or a version each has
its own class (all ``NotFound``, exit 3), through the API and the command line alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dcsync.cli.main import app
from dcsync.errors import (
    AliasNotFound,
    CtypeNotFound,
    DcsyncError,
    DetectorNotFound,
    NotFound,
    RemoteNotFound,
    VersionNotFound,
)
from dcsync.workspace.workspace import Workspace

DET = "epix100a-1"
T0 = 1_767_225_600_000_000_000


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "calib")
    ws.new_detector(DET, alias="Cam1").close()
    with ws.repository(DET) as repo, repo.transaction("peds") as tx:
        tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0)
    return ws


def _fails(ws: Workspace, *args: str) -> dict[str, object]:
    """Run a command that must fail with exit 3; its ``--json`` error document."""
    result = CliRunner().invoke(app, ["-C", str(ws.root), *args, "--json"])
    assert result.exit_code == 3, (args, result.output, result.exception)
    assert "Traceback" not in result.output
    error = json.loads(result.stdout)["error"]
    assert error["exit"] == 3
    return dict(error)


def test_a_name_that_is_no_detector_name_is_a_missing_alias(ws: Workspace) -> None:
    with pytest.raises(AliasNotFound, match="no detector or alias 'Cam9'"):
        ws.resolve("Cam9")
    with pytest.raises(DetectorNotFound, match="no detector or alias 'epix100a-9'"):
        ws.resolve("epix100a-9")  # a detector's name: the detector is what is missing
    assert _fails(ws, "get", "Cam9", "pedestals")["code"] == "not-found.alias"
    assert _fails(ws, "get", "epix100a-9", "pedestals")["code"] == "not-found.detector"
    assert _fails(ws, "alias", "rm", "Cam9")["code"] == "not-found.alias"


def test_taking_a_version_from_a_remote_never_fetched_is_a_missing_remote(ws: Workspace) -> None:
    missing = pytest.raises(RemoteNotFound, match=f"{DET} has no remotes/origin")
    with ws.repository(DET) as repo, missing, repo.transaction("take") as tx:
        tx.take_version("pedestals", "abc", ref="remotes/origin")
    error = _fails(ws, "default", DET, "pedestals", "origin:abc")
    assert error["code"] == "not-found.remote" and "fetch from that remote first" in str(error["message"])


def test_a_missing_ctype_or_version_says_which(ws: Workspace) -> None:
    with ws.repository(DET) as repo:
        with pytest.raises(CtypeNotFound, match="pixel_mask"):
            repo.get("pixel_mask")
        with pytest.raises(VersionNotFound, match="'ffffff'"):
            repo.get("pedestals", version="ffffff")
    assert _fails(ws, "get", DET, "pixel_mask")["code"] == "not-found.ctype"
    assert _fails(ws, "get", DET, "pedestals", "--version", "ffffff")["code"] == "not-found.version"


@pytest.mark.parametrize("cls", [AliasNotFound, RemoteNotFound, CtypeNotFound, VersionNotFound])
def test_each_is_a_not_found_with_exit_3(cls: type[DcsyncError]) -> None:
    assert issubclass(cls, NotFound) and not issubclass(cls, DetectorNotFound) and cls.exit_code == 3
