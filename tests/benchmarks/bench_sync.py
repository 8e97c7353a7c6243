"""Benchmarks of sync over real SSH on loopback, each beside the tool people would use instead.

Run ``python tests/benchmarks/bench_sync.py [--quick] [--json OUT] [--only clone,...] [--profile DIR]``.

An OpenSSH ``sshd`` is started on 127.0.0.1 with throwaway keys (``tests/sshd.py``). dcsync connects
with paramiko, reading an ``ssh_config`` and ``known_hosts`` from a temporary HOME; the baselines run
the system ``scp`` and ``rsync`` through the same server (``-F ssh_config``). The remote program is
this interpreter running this checkout (``<python> -m dcsync``).

1. ``clone``: ``sync.clone`` of a ~1 GiB workspace (4 detectors of 250 MiB of distinct float32
   arrays, 196 small detectors of a few KB of constants: 200 files) against ``scp -O -r`` and
   ``rsync -a`` of the same folder. Each dcsync clone runs in a fresh process (as the CLI would),
   which also gives benchmark 4 its figures. Target: dcsync's throughput at least scp's (time ratio
   <= 1). Information rows: the same clone from a local path (``dcsync serve`` over pipes, no SSH),
   which separates the transport's cost from the store's, and paramiko alone reading the same
   files (``cat`` through dcsync's channel, bytes dropped), the transport's own floor.
2. ``incremental``: pull of one new 10 MB version into a 1 GB repository file (one detector),
   against ``rsync -a`` of that file after the same change. Bytes on the wire: what dcsync's
   channel read and wrote (the benchmark wraps the channel ``sync`` opens), and rsync's ``--stats``
   total bytes sent + received; neither counts SSH's own framing. Targets: dcsync bytes <= 1.05x the
   new payload + 64 KiB; wall time <= 0.2x rsync's. The clone being pulled into starts as a copy of
   the source made a clone through the store API (cloning 1 GB again would add a minute).
3. ``uptodate``: pull when all 200 detector files are already up to date. Targets: one channel
   opened, under 1 s. Information rows: connect + hello alone, the pull on an already open
   connection, and ``rsync -a`` of the up-to-date folder.
4. ``memory``: peak RSS (VmHWM, reset after the imports) of a fresh process cloning the workspace
   of benchmark 1 (its runs, or its own when run alone). Target: under 300 MB. Information: the
   serving process's peak (``/usr/bin/time`` in front of the remote program).

``--quick`` shrinks everything (~50 MB, 20 files) so the smoke test runs in well under 90 s.
``--profile DIR`` adds one clone under cProfile (client main thread, paramiko's transport thread,
server), with the client's fsync/unlink time broken down by file, and prints where the time goes.
Files go under a temporary directory (``TMPDIR`` is respected) that is removed at the end. As in
``bench_store.py``, the exit status is 0 whether targets pass or miss; a non-zero status means the
benchmark itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

# Benchmark this checkout, whatever else is installed; reuse the sshd starter and the report helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgpack
import numpy as np
import paramiko
import psutil
from bench_store import (
    GB,
    KB,
    MB,
    Benchmark,
    Row,
    distinct_array,
    finish,
    fmt_bytes,
    machine_line,
    median,
    peak_rss,
    print_benchmark,
    reset_peak_rss,
    rss,
    timed,
)
from bench_store import machine as store_machine
from helpers.channels import ForwardingChannel
from sshd import SSHServer, sshd_unavailable_reason, start_sshd

from dcsync import sync
from dcsync.repo.repository import Repository
from dcsync.store.refs import LogRecord, remote_ref
from dcsync.sync import client
from dcsync.sync.client import Connection
from dcsync.transport import open_channel, parse_remote_url
from dcsync.transport.base import Channel
from dcsync.transport.paramiko import ParamikoChannel
from dcsync.workspace import config
from dcsync.workspace.workspace import Workspace, open_repository

T0 = 1_700_000_000 * 10**9
RANGE_NS = 10**9
BIG_CTYPES = ("pedestals", "pixel_gain", "pixel_rms", "pixel_status")
SMALL_CTYPES = ("pedestals", "pixel_gain", "geometry_shift")
TIME = "/usr/bin/time"
MAXRSS_TAG = "DCSYNC-BENCH-MAXRSS"
MEMORY_LIMIT = 300 * MB
UPTODATE_LIMIT = 1.0


@dataclass(frozen=True)
class Sizes:
    """Everything --quick shrinks."""

    big_detectors: int
    big_detector_bytes: int
    big_array_bytes: int
    small_detectors: int
    small_constant_shape: tuple[int, int]
    single_file_bytes: int
    single_array_bytes: int
    increment_bytes: int
    row_shape: tuple[int, int]  # arrays are (n, *row_shape), like (modules, rows, columns)
    clone_samples: int
    diagnostic_samples: int
    incremental_samples: int
    uptodate_samples: int
    memory_samples: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(4, 250 * MB, 50 * MB, 196, (16, 64), 1 * GB, 64 * MB, 10 * MB, (512, 1024), 3, 1, 3, 7, 1)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(4, 10 * MB, 5 * MB, 16, (16, 64), 48 * MB, 8 * MB, 2 * MB, (128, 256), 2, 1, 2, 3, 1)

    @property
    def workspace_bytes(self) -> int:
        return self.big_detectors * self.big_detector_bytes


# -- helpers ---------------------------------------------------------------------------------------


def array(nbytes: int, seed: int, row_shape: tuple[int, int]) -> np.ndarray:
    """Distinct float32 data shaped (n, *row_shape)."""
    return distinct_array(nbytes, seed).reshape(-1, *row_shape)


def range_bounds(i: int) -> tuple[int, int]:
    return T0 + i * RANGE_NS, T0 + (i + 1) * RANGE_NS


def range_ns(i: int) -> dict[str, int]:
    """``range_bounds(i)`` as the keyword arguments of ``Transaction.add`` (times in ns)."""
    begin, end = range_bounds(i)
    return {"begin_ns": begin, "end_ns": end}


def folder_bytes(path: Path) -> tuple[int, int]:
    """Total size and count of the regular files under ``path``."""
    total = count = 0
    for parent, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(parent, name)).st_size
            count += 1
    return total, count


def heads(root: Path) -> dict[str, str | None]:
    ws = Workspace(root)
    out = {}
    for det in ws.detectors():
        with Repository.open(ws.detector_path(det)) as repo:
            out[det] = repo.head()
    return out


def run(argv: list[str]) -> str:
    """Run a baseline command; its failure is the benchmark's."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mbps(nbytes: float, seconds: float) -> str:
    return f"{nbytes / seconds / MB:.0f} MB/s"


# -- counting what crosses the channel ---------------------------------------------------------------


class CountingChannel(ForwardingChannel):
    """Wraps the channel ``sync`` opens and counts the bytes read from and written to the peer."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner)
        self.bytes_read = 0
        self.bytes_written = 0

    def read(self, n: int) -> bytes:
        data = self.inner.read(n)
        self.bytes_read += len(data)
        return data

    def write(self, data: bytes) -> None:
        self.inner.write(data)
        self.bytes_written += len(data)


@dataclass
class Meter:
    channels: list[CountingChannel] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return sum(c.bytes_read for c in self.channels)

    @property
    def bytes_written(self) -> int:
        return sum(c.bytes_written for c in self.channels)


@contextlib.contextmanager
def metered() -> Iterator[Meter]:
    """Count the channels ``dcsync.sync`` opens while inside, and the bytes on each (wrapping
    ``open_channel`` where sync looks it up: nothing in dcsync changes)."""
    meter = Meter()

    def counting_open_channel(url: str, **kwargs: Any) -> Channel:
        channel = CountingChannel(open_channel(url, **kwargs))
        meter.channels.append(channel)
        return channel

    with mock.patch.object(client, "open_channel", counting_open_channel):
        yield meter


def paramiko_cipher(channel: Channel) -> str:
    """The cipher and MAC paramiko negotiated (benchmark introspection of a private attribute)."""
    inner = channel.inner if isinstance(channel, CountingChannel) else channel
    try:
        transport = inner._clients[-1].get_transport()  # type: ignore[attr-defined]
        return f"{transport.remote_cipher} / {transport.remote_mac}"
    except (AttributeError, IndexError):
        return "unknown"


# -- the server and the baselines --------------------------------------------------------------------


class Loopback:
    """sshd on 127.0.0.1, a HOME whose ``~/.ssh/config`` lets paramiko in, and the baseline tools."""

    def __init__(self, work: Path) -> None:
        self.server: SSHServer
        self.server, self.process = start_sshd(work / "sshd")
        self.home = work / "home"
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (ssh_dir / "config").write_text(self.server.config_block(self.server.host))
        (ssh_dir / "config").chmod(0o600)
        os.environ["HOME"] = str(self.home)  # paramiko reads ~/.ssh/config; children inherit it
        os.environ["XDG_CONFIG_HOME"] = str(self.home / ".config")

    @property
    def remote_dcsync(self) -> str:
        return f"{shlex.quote(sys.executable)} -m dcsync"

    @property
    def ssh_command(self) -> str:
        return self.server.ssh_command

    def url(self, path: Path) -> str:
        return f"ssh://{self.server.user}@{self.server.host}:{self.server.port}{path}"

    def remote(self, path: Path | str) -> str:
        return f"{self.server.alias}:{path}"

    def scp(self, src: Path, dst: Path) -> None:
        # -O: the scp protocol; the test sshd has no sftp subsystem, which scp uses by default
        run(["scp", "-O", "-q", "-r", "-F", str(self.server.ssh_config), self.remote(src), str(dst)])

    def rsync(self, src: str, dst: str) -> dict[str, int]:
        """``rsync -a`` from the server; returns --stats' total bytes sent and received."""
        out = run(["rsync", "-a", "--stats", "-e", self.ssh_command, self.remote(src), dst])
        stats = {}
        for key in ("sent", "received"):
            match = re.search(rf"Total bytes {key}: ([\d,.]+)", out)
            stats[key] = int(re.sub(r"[,.]", "", match.group(1))) if match else -1
        return stats

    def openssh_cipher(self) -> str:
        proc = subprocess.run(
            ["ssh", "-v", "-F", str(self.server.ssh_config), self.server.alias, "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        match = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+)", proc.stderr)
        return f"{match.group(1)} / {match.group(2)}" if match else "unknown"

    def paramiko_cat(self, folder: Path) -> None:
        """Read every file under ``folder`` through dcsync's paramiko channel (``cat``), and drop it."""
        paths = " ".join(shlex.quote(str(p)) for p in sorted(folder.rglob("*")) if p.is_file())
        channel = ParamikoChannel(parse_remote_url(self.url(folder)), f"cat {paths}")
        try:
            while channel.read(1 << 20):
                pass
        finally:
            channel.close()

    def paramiko_cipher(self) -> str:
        channel = open_channel(self.url(self.home), remote_dcsync=self.remote_dcsync)
        try:
            return paramiko_cipher(channel)
        finally:
            channel.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- building workspaces -----------------------------------------------------------------------------


def build_workspace(root: Path, sizes: Sizes) -> None:
    """Big detectors of distinct arrays (one commit per array) and many small detectors."""
    ws = Workspace.init(root, kind="repository")
    per_detector = sizes.big_detector_bytes // sizes.big_array_bytes
    for d in range(sizes.big_detectors):
        with ws.new_detector(f"jungfrau-{d + 1}") as repo:
            for k in range(per_detector):
                value = array(sizes.big_array_bytes, 100 * d + k, sizes.row_shape)
                with repo.transaction(f"constant {k}") as tx:
                    tx.add(BIG_CTYPES[k % len(BIG_CTYPES)], value, **range_ns(k))
    rng = np.random.default_rng(7)
    for s in range(sizes.small_detectors):
        with ws.new_detector(f"epix100-{s + 1}") as repo, repo.transaction("calibrate") as tx:
            for ctype in SMALL_CTYPES:
                tx.add(
                    ctype,
                    rng.random(sizes.small_constant_shape, dtype=np.float32),
                    begin_ns=T0,
                    new_ctype=True,
                )


SINGLE = "jungfrau-100"


def build_single(root: Path, sizes: Sizes) -> Path:
    """One detector file of about ``single_file_bytes``; returns its path."""
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(SINGLE) as repo:
        for k in range(sizes.single_file_bytes // sizes.single_array_bytes):
            value = array(sizes.single_array_bytes, 5000 + k, sizes.row_shape)
            with repo.transaction(f"constant {k}") as tx:
                tx.add(BIG_CTYPES[k % len(BIG_CTYPES)], value, **range_ns(k))
    return ws.detector_path(SINGLE)


class State:
    """What the benchmarks share: the big workspace, and a clone and an rsync copy of it."""

    def __init__(self, work: Path, sizes: Sizes, env: Loopback) -> None:
        self.work, self.sizes, self.env = work, sizes, env
        self.source: Path | None = None
        self.build_seconds = 0.0
        self.clone: Path | None = None  # a dcsync clone of the source, for the up-to-date pull
        self.copy: Path | None = None  # an rsync copy of the source, for rsync's up-to-date baseline
        self.clone_runs: list[dict[str, Any]] = []  # clone_child() results, for the memory benchmark

    def workspace(self) -> Path:
        if self.source is None:
            self.source = self.work / "src"
            t = time.perf_counter()
            build_workspace(self.source, self.sizes)
            self.build_seconds = time.perf_counter() - t
        return self.source

    def clone_and_copy(self) -> tuple[Path, Path]:
        src = self.workspace()
        if self.clone is None:
            self.clone = self.work / "kept-clone"
            sync.clone(self.env.url(src), self.clone, remote_dcsync=self.env.remote_dcsync)
        if self.copy is None:
            self.copy = self.work / "kept-copy"
            self.env.rsync(f"{src}/", f"{self.copy}/")
        return self.clone, self.copy

    def drop_clone_and_copy(self) -> None:
        for path in (self.clone, self.copy):
            if path is not None:
                remove(path)
        self.clone = self.copy = None


# -- 1. clone ----------------------------------------------------------------------------------------


def bench_clone(sizes: Sizes, state: State) -> Benchmark:
    env, work = state.env, state.work
    src = state.workspace()
    total, files = folder_bytes(src)
    n_det = len(Workspace(src).detectors())
    b = Benchmark(f"1. clone of a {fmt_bytes(total)} workspace ({n_det} detector files) over SSH vs scp -r")
    times: dict[str, list[float]] = {"scp": [], "rsync": []}
    for i in range(sizes.clone_samples):
        dest = work / f"clone-dcsync-{i}"
        state.clone_runs.append(run_clone_child(env, src, dest))
        if i == 0 and heads(dest) != heads(src):
            raise RuntimeError("the dcsync clone's HEADs differ from the source's")
        if state.clone is None and i == sizes.clone_samples - 1:
            state.clone = dest
        else:
            remove(dest)
        dest = work / f"clone-scp-{i}"
        times["scp"].append(timed(lambda d=dest: env.scp(src, d)))
        remove(dest)
        dest = work / f"clone-rsync-{i}"
        times["rsync"].append(timed(lambda d=dest: env.rsync(f"{src}/", f"{d}/")))
        if state.copy is None and i == sizes.clone_samples - 1:
            state.copy = dest
        else:
            remove(dest)
    local: list[float] = []
    raw: list[float] = []
    for i in range(sizes.diagnostic_samples):
        dest = work / f"clone-local-{i}"
        local.append(timed(lambda d=dest: sync.clone(str(src), d)))
        remove(dest)
        raw.append(timed(lambda: env.paramiko_cat(src)))

    ours = [r["seconds"] for r in state.clone_runs]
    wire = [r["channel_bytes"] for r in state.clone_runs]
    m = {"dcsync": median(ours), **{k: median(v) for k, v in times.items()}}
    b.rows.append(
        Row(
            "dcsync clone (paramiko) vs scp -O -r",
            m["dcsync"],
            m["scp"],
            target="thrpt >= 1.0x (ratio <= 1)",
            passed=m["dcsync"] <= m["scp"],
            samples=len(ours),
            note=(
                f"{mbps(total, m['dcsync'])} vs {mbps(total, m['scp'])}; "
                f"throughput {m['scp'] / m['dcsync']:.2f}x of scp's; channel bytes {fmt_bytes(median(wire))}"
            ),
            extra={
                "workspace_bytes": total,
                "files": files,
                "detectors": n_det,
                "times": ours,
                "baseline_times": times["scp"],
                "channel_bytes": wire,
                "throughput_ratio": m["scp"] / m["dcsync"],
            },
        )
    )
    b.rows.append(
        Row(
            "dcsync clone (paramiko) vs rsync -a",
            m["dcsync"],
            m["rsync"],
            target="(info)",
            samples=len(times["rsync"]),
            note=f"rsync {mbps(total, m['rsync'])}",
            extra={"baseline_times": times["rsync"]},
        )
    )
    if local:
        b.rows.append(
            Row(
                "dcsync clone from a local path (no SSH) vs scp -O -r",
                median(local),
                m["scp"],
                target="(info)",
                samples=len(local),
                note=f"{mbps(total, median(local))}; dcsync serve over pipes, in-process client",
                extra={"times": local},
            )
        )
    if raw:
        b.rows.append(
            Row(
                "paramiko alone: cat of every file, read and dropped, vs scp -O -r",
                median(raw),
                m["scp"],
                target="(info)",
                samples=len(raw),
                note=f"{mbps(total, median(raw))}; the transport's own cost, no dcsync work on either side",
                extra={"times": raw},
            )
        )
    b.notes.append(
        f"{files} files, built in {state.build_seconds:.1f} s; throughput = source folder bytes / wall "
        "time (dcsync's measured around sync.clone in a fresh process). dcsync takes each new detector "
        "as a whole file, re-hashes every object in it and fsyncs it before linking it in; scp and rsync "
        "neither verify nor fsync. Everything is in the page cache; client, server and sshd share the CPUs."
    )
    return b


def clone_child(url: str, dest: str, remote_dcsync: str) -> dict[str, Any]:
    """Runs in a fresh process: one clone, its time, channel bytes and peak RSS (VmHWM, reset after
    the imports, which are done at module level), and the server's peak if it reported one."""
    gc.collect()
    reset = reset_peak_rss()
    before = rss()
    with metered() as meter:
        t = time.perf_counter()
        sync.clone(url, dest, remote_dcsync=remote_dcsync)
        seconds = time.perf_counter() - t
    peak = peak_rss()
    match = re.search(rf"{MAXRSS_TAG} (\d+)", meter.channels[0].stderr_text())
    return {
        "seconds": seconds,
        "channel_bytes": meter.bytes_read + meter.bytes_written,
        "channels": len(meter.channels),
        "rss_before": before,
        "peak": peak,
        "peak_was_reset": int(reset),
        "server_peak": int(match.group(1)) * KB if match else None,
    }


def run_clone_child(env: Loopback, src: Path, dest: Path) -> dict[str, Any]:
    remote = env.remote_dcsync
    if os.access(TIME, os.X_OK):  # the serving process's peak, reported on its stderr
        remote = f"{TIME} -f {shlex.quote(MAXRSS_TAG + ' %M')} {remote}"
    out = run([sys.executable, __file__, "--clone-child", env.url(src), str(dest), remote])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- 2. incremental pull -----------------------------------------------------------------------------


def bench_incremental(sizes: Sizes, state: State) -> Benchmark:
    env, work = state.env, state.work
    src_root = work / "single-src"
    t = time.perf_counter()
    src_file = build_single(src_root, sizes)
    build_s = time.perf_counter() - t
    size = src_file.stat().st_size
    b = Benchmark(
        f"2. pull of one new {fmt_bytes(sizes.increment_bytes)} version into a {fmt_bytes(size)} "
        "repository file vs rsync -a of the file"
    )
    dst_root = work / "single-clone"
    t = time.perf_counter()
    ws = copy_as_clone(src_root, dst_root, env.url(src_root), env.remote_dcsync)
    copy = work / "single-copy.h5"
    shutil.copy2(src_file, copy)  # rsync's basis: same size and mtime, so rsync -a sees it up to date
    setup_s = time.perf_counter() - t

    ours: list[float] = []
    theirs: list[float] = []
    wire: list[int] = []
    rsync_wire: list[int] = []
    channels: list[int] = []
    objects: list[int] = []
    for i in range(sizes.incremental_samples):
        value = array(sizes.increment_bytes, 9000 + i, sizes.row_shape)
        with open_repository(src_file) as repo, repo.transaction(f"new version {i}") as tx:
            tx.add("pedestals", value, **range_ns(1000 + i))
        del value
        with metered() as meter:
            t = time.perf_counter()
            report = sync.pull(ws, "origin")
            ours.append(time.perf_counter() - t)
        wire.append(meter.bytes_read + meter.bytes_written)
        channels.append(len(meter.channels))
        objects.append(report.fetch.objects)
        if heads(dst_root) != heads(src_root):
            raise RuntimeError("the pull did not bring HEAD to the source's")
        t = time.perf_counter()
        stats = env.rsync(str(src_file), str(copy))
        theirs.append(time.perf_counter() - t)
        rsync_wire.append(stats["sent"] + stats["received"])

    payload = sizes.increment_bytes
    limit = 1.05 * payload + 64 * KB
    b.rows.append(
        Row(
            "bytes on the wire vs rsync's",
            median(wire),
            median(rsync_wire),
            unit="bytes",
            target=f"<= 1.05 x payload + 64 KiB ({fmt_bytes(limit)})",
            passed=max(wire) <= limit,
            samples=len(wire),
            note=(
                f"payload {fmt_bytes(payload)}; dcsync {max(wire) / payload:.3f}x payload (max of runs), "
                f"{median(objects):.0f} objects; rsync {median(rsync_wire) / payload:.2f}x payload"
            ),
            extra={
                "payload_bytes": payload,
                "channel_bytes": wire,
                "rsync_bytes": rsync_wire,
                "objects": objects,
            },
        )
    )
    b.rows.append(
        Row(
            "wall time vs rsync's",
            median(ours),
            median(theirs),
            target="<= 0.2x",
            passed=median(ours) <= 0.2 * median(theirs),
            samples=len(ours),
            note=f"channels opened per pull: {sorted(set(channels))}",
            extra={"times": ours, "baseline_times": theirs, "channels": channels},
        )
    )
    b.notes.append(
        f"file built in {build_s:.1f} s, copied for both sides in {setup_s:.1f} s. Each run adds one "
        "version (a new range) to the source, then pulls it with dcsync and rsyncs the file. Channel "
        "bytes are the sync protocol's (frames), rsync's --stats its protocol's, both inside SSH."
    )
    remove(src_root)
    remove(dst_root)
    copy.unlink(missing_ok=True)
    return b


def copy_as_clone(src: Path, dst: Path, url: str, remote_dcsync: str) -> Workspace:
    """A copy of workspace ``src`` that is what cloning it from ``url`` leaves: remote ``origin`` and
    each detector's ``remotes/origin`` at its HEAD (set through the store API)."""
    shutil.copytree(src, dst)
    ws = Workspace(dst)
    ws.write_config({"kind": "local"})
    config.add_remote(ws, config.RemoteConfig("origin", url, remote_dcsync))
    ref = remote_ref("origin")
    for det in ws.detectors():
        with Repository.open(ws.detector_path(det)) as repo:
            head = repo.head()
            with repo.store.writing():
                repo.store.set_ref(ref, None, head, LogRecord(ref, None, head, "clone", "benchmark setup"))
    return ws


# -- 3. up-to-date pull ------------------------------------------------------------------------------


def bench_uptodate(sizes: Sizes, state: State) -> Benchmark:
    env = state.env
    src = state.workspace()
    clone, copy = state.clone_and_copy()
    ws = Workspace(clone)
    n_det = len(ws.detectors())
    b = Benchmark(f"3. pull with all {n_det} detector files up to date")
    spec = config.get_remote(ws, "origin")

    def connect_only() -> None:
        Connection(open_channel(spec.url, remote_dcsync=spec.remote_dcsync)).close()

    pulls: list[float] = []
    channels: list[int] = []
    wire: list[int] = []
    on_open: list[float] = []
    connects: list[float] = []
    rsyncs: list[float] = []
    for _ in range(sizes.uptodate_samples):
        with metered() as meter:
            t = time.perf_counter()
            report = sync.pull(ws, "origin")
            pulls.append(time.perf_counter() - t)
        if report.fetch.updated or report.fast_forwarded or report.merged:
            raise RuntimeError(f"an up-to-date pull changed something: {report.to_json()}")
        channels.append(len(meter.channels))
        wire.append(meter.bytes_read + meter.bytes_written)
        with sync.connect(spec) as conn:
            on_open.append(timed(lambda c=conn: sync.pull(ws, "origin", conn=c)))
        connects.append(timed(connect_only))
        rsyncs.append(timed(lambda: env.rsync(f"{src}/", f"{copy}/")))

    b.rows.append(
        Row(
            f"pull, {n_det} files up to date vs rsync -a",
            median(pulls),
            median(rsyncs),
            target=f"< {UPTODATE_LIMIT:.0f} s, 1 channel",
            passed=median(pulls) < UPTODATE_LIMIT and set(channels) == {1},
            samples=len(pulls),
            note=f"channels per pull: {sorted(set(channels))}; channel bytes {fmt_bytes(median(wire))}",
            extra={"times": pulls, "baseline_times": rsyncs, "channels": channels, "channel_bytes": wire},
        )
    )
    b.rows.append(
        Row(
            "  of which: connect + hello only",
            median(connects),
            target="(info)",
            samples=len(connects),
            note="SSH handshake, auth, remote 'python -m dcsync serve' start-up, preamble, hello",
            extra={"times": connects},
        )
    )
    b.rows.append(
        Row(
            "  of which: pull on an already open connection",
            median(on_open),
            target="(info)",
            samples=len(on_open),
            note="heads + the local checks of every file",
            extra={"times": on_open},
        )
    )
    state.drop_clone_and_copy()
    return b


# -- 4. memory ---------------------------------------------------------------------------------------


def bench_memory(sizes: Sizes, state: State) -> Benchmark:
    env, work = state.env, state.work
    src = state.workspace()
    total, _ = folder_bytes(src)
    b = Benchmark(f"4. peak RSS of cloning the {fmt_bytes(total)} workspace (fresh process)")
    runs = state.clone_runs
    if runs:
        b.notes.append("the runs are benchmark 1's clones")
    else:
        for i in range(sizes.memory_samples):
            dest = work / f"memory-clone-{i}"
            runs.append(run_clone_child(env, src, dest))
            remove(dest)
    peak = median([r["peak"] for r in runs])
    b.rows.append(
        Row(
            "client peak RSS (VmHWM)",
            peak,
            unit="bytes",
            target=f"< {fmt_bytes(MEMORY_LIMIT)}",
            passed=peak < MEMORY_LIMIT,
            samples=len(runs),
            note=(
                f"max of runs {fmt_bytes(max(r['peak'] for r in runs))}; RSS after imports "
                f"{fmt_bytes(median([r['rss_before'] for r in runs]))}"
            ),
            extra={"runs": runs},
        )
    )
    server = [r["server_peak"] for r in runs if r["server_peak"] is not None]
    if server:
        b.rows.append(
            Row(
                "server peak RSS (dcsync serve)",
                median(server),
                unit="bytes",
                target="(info)",
                samples=len(server),
                note=f"max RSS from {TIME}",
            )
        )
    if not all(r["peak_was_reset"] for r in runs):
        b.notes.append("could not reset VmHWM: the peak includes the imports' (they come first anyway)")
    return b


# -- profiling ---------------------------------------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, f"thread {t.id}")
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def top(path: Path, sort: str, count: int = 22) -> str:
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).strip_dirs().sort_stats(sort).print_stats(count)
    return buf.getvalue()


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _io_category(path: str) -> str:
    name = os.path.basename(path)
    if "/.dcsync/incoming" in path:
        if name.endswith((".h5.part", ".h5.token")):
            return "whole file being received (.h5.part)"
        if name.endswith(".part"):
            return "quarantine object being received (.part)"
        if name.endswith(".npy"):
            return "quarantine array (.npy)"
        if os.path.splitext(name)[1] in (".tree", ".commit", ".text"):
            return "quarantine tree/commit/text"
        return "quarantine directory"
    if name.endswith(".h5"):
        return "repository file (.h5)"
    if ".journal" in name:
        return "journal"
    if ".lock" in name or ".broken-" in name:
        return "lock file"
    if path.endswith("/") or os.path.isdir(path):
        return "directory"
    return "other: *" + (os.path.splitext(name)[1] or name)


@contextlib.contextmanager
def io_breakdown() -> Iterator[dict[tuple[str, str], list[float]]]:
    """Time this process's ``os.fsync``, ``os.unlink`` and ``os.rmdir`` calls by the kind of file
    (wrapped here, for the profile; (call, category) -> [calls, seconds, bytes synced])."""
    table: dict[tuple[str, str], list[float]] = {}
    real = {"fsync": os.fsync, "unlink": os.unlink, "rmdir": os.rmdir}

    def record(call: str, path: str, seconds: float, nbytes: int = 0) -> None:
        row = table.setdefault((call, _io_category(path)), [0, 0.0, 0])
        row[0] += 1
        row[1] += seconds
        row[2] += nbytes

    def fsync(fd: Any) -> None:
        fd = fd if isinstance(fd, int) else fd.fileno()
        path, size = _fd_path(fd), os.fstat(fd).st_size
        t = time.perf_counter()
        real["fsync"](fd)
        record("fsync", path, time.perf_counter() - t, size)

    def removal(call: str) -> Callable[..., None]:
        def remove_path(path: Any, *, dir_fd: int | None = None) -> None:
            full = (
                os.path.join(_fd_path(dir_fd), os.fsdecode(path)) if dir_fd is not None else os.fsdecode(path)
            )
            category = full if call == "unlink" else full + "/"
            t = time.perf_counter()
            real[call](path, dir_fd=dir_fd)
            record(call, category, time.perf_counter() - t)

        return remove_path

    with (
        mock.patch.object(os, "fsync", fsync),
        mock.patch.object(os, "unlink", removal("unlink")),
        mock.patch.object(os, "rmdir", removal("rmdir")),
    ):
        yield table


def print_io(table: dict[tuple[str, str], list[float]], wall: float) -> None:
    print(f"-- client fsync/unlink/rmdir time by file (wall {wall:.2f} s)")
    rows = sorted(table.items(), key=lambda kv: -kv[1][1])
    for (call, category), (calls, seconds, nbytes) in rows:
        synced = f", {fmt_bytes(nbytes)} (file sizes)" if call == "fsync" else ""
        print(f"  {call:6} {category:44} {int(calls):6} calls  {seconds:7.2f} s{synced}")
    total = sum(v[1] for v in table.values())
    print(f"  total {total:.2f} s = {total / wall:.0%} of the wall time")


def profile_clone(state: State, out: Path) -> None:
    """One more clone, with cProfile on the client's main thread, on paramiko's transport thread
    (wrapped in the benchmark) and on the server (``python -m cProfile -m dcsync``)."""
    env = state.env
    src = state.workspace()
    out.mkdir(parents=True, exist_ok=True)
    client, transport, server = (
        out / "clone-client.prof",
        out / "clone-paramiko.prof",
        out / "clone-server.prof",
    )
    remote = f"{shlex.quote(sys.executable)} -m cProfile -o {shlex.quote(str(server))} -m dcsync"
    real_run = paramiko.Transport.run
    cpu: dict[str, float] = {}

    def profiled_run(self: paramiko.Transport) -> None:
        prof = cProfile.Profile()
        prof.enable()
        try:
            real_run(self)
        finally:
            prof.disable()
            prof.dump_stats(str(transport))
            cpu.update({f"paramiko transport ({self.name})": time.thread_time()})

    dest = state.work / "profile-clone"
    with io_breakdown() as table:  # a first clone without cProfile: the I/O table and honest wall time
        t = time.perf_counter()
        sync.clone(env.url(src), dest, remote_dcsync=env.remote_dcsync)
        io_wall = time.perf_counter() - t
    remove(dest)
    prof = cProfile.Profile()
    with mock.patch.object(paramiko.Transport, "run", profiled_run):
        before = thread_cpu()
        t = time.perf_counter()
        prof.enable()
        sync.clone(env.url(src), dest, remote_dcsync=remote)
        prof.disable()
        wall = time.perf_counter() - t
        main_cpu = thread_cpu().get("MainThread", 0.0) - before.get("MainThread", 0.0)
    prof.dump_stats(str(client))
    remove(dest)
    print(f"== profile of a clone of {src} (profiles in {out})")
    print_io(table, io_wall)
    print(
        f"-- under cProfile (wall {wall:.2f} s): client CPU: main thread {main_cpu:.2f} s; "
        + "; ".join(f"{k} {v:.2f} s" for k, v in cpu.items())
    )
    for label, path in (
        ("client main thread", client),
        ("paramiko transport thread", transport),
        ("server", server),
    ):
        for _ in range(50):  # the server writes its profile as it exits, after the client closed
            if path.exists():
                break
            time.sleep(0.1)
        if not path.exists():
            print(f"  ({label}: no profile written)")
            continue
        print(f"-- {label}: top by own time")
        print(top(path, "tottime"))
    print(flush=True)


# -- report ------------------------------------------------------------------------------------------


def tool_version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    return (proc.stdout + proc.stderr).strip().splitlines()[0] if (proc.stdout + proc.stderr).strip() else "?"


def machine(env: Loopback) -> dict[str, Any]:
    import cryptography

    m = store_machine()
    m.update(
        {
            "paramiko": paramiko.__version__,
            "cryptography": cryptography.__version__,
            "msgpack": ".".join(map(str, msgpack.version)),
            "openssh": tool_version(["ssh", "-V"]),
            "rsync": tool_version(["rsync", "--version"]),
            "openssh_cipher": env.openssh_cipher(),
            "paramiko_cipher": env.paramiko_cipher(),
            "dcsync_env": {k: v for k, v in os.environ.items() if k.startswith("DCSYNC_")},
        }
    )
    return m


def print_header(m: dict[str, Any], work: Path, quick: bool, env: Loopback) -> None:
    print("dcsync sync benchmarks over SSH on loopback" + (" (--quick: sizes shrunk ~20x)" if quick else ""))
    print(machine_line(m))
    print(
        f"python {m['python']}, paramiko {m['paramiko']}, cryptography {m['cryptography']}, "
        f"msgpack {m['msgpack']}, h5py {m['h5py']}, HDF5 {m['hdf5']}, numpy {m['numpy']}"
    )
    print(f"{m['openssh']}; {m['rsync']}")
    print(f"cipher / MAC: paramiko {m['paramiko_cipher']}; OpenSSH (scp, rsync) {m['openssh_cipher']}")
    print(f"sshd on {env.server.host}:{env.server.port}; remote dcsync: {env.remote_dcsync}")
    if m["dcsync_env"]:
        print(f"DCSYNC_* set (the client side only sees them): {m['dcsync_env']}")
    print(f"files under {work} ({fmt_bytes(shutil.disk_usage(work).free)} free)")
    print(f"load average at start: {m['load_average']} (on {m['cpus_usable']} usable CPUs)")
    print(
        "Figures are noisy single-machine measurements: client, server, sshd and the baselines share "
        "these CPUs and the page cache (medians; ratio = dcsync / baseline)."
    )
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="sizes shrunk (~50 MB, 20 files) for the smoke test"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument(
        "--only", help="comma-separated subset of: clone,incremental,uptodate,memory ('' with --profile)"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="also profile one clone; profiles go here"
    )
    parser.add_argument("--clone-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.clone_child:
        print(json.dumps(clone_child(*args.clone_child)))
        return 0

    sizes = Sizes.quick() if args.quick else Sizes.full()
    names = ["clone", "incremental", "uptodate", "memory"]
    chosen = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(chosen) - set(names)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    reason = sshd_unavailable_reason()
    missing = [tool for tool in ("ssh", "scp", "rsync") if shutil.which(tool) is None]
    if reason or missing:
        print(f"cannot run: {reason or 'missing ' + ', '.join(missing)}", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="dcsync-bench-sync-"))
    need = 10 * max(sizes.workspace_bytes, sizes.single_file_bytes)
    free = shutil.disk_usage(work).free
    if free < need:
        remove(work)
        print(
            f"cannot run: {fmt_bytes(free)} free under {work.parent}, needs {fmt_bytes(need)}",
            file=sys.stderr,
        )
        return 2

    started = time.perf_counter()
    results: dict[str, Benchmark] = {}
    env = Loopback(work)
    try:
        m = machine(env)
        print_header(m, work, args.quick, env)
        state = State(work, sizes, env)
        runners: dict[str, Callable[[], Benchmark]] = {
            "clone": lambda: bench_clone(sizes, state),
            "incremental": lambda: bench_incremental(sizes, state),
            "uptodate": lambda: bench_uptodate(sizes, state),
            "memory": lambda: bench_memory(sizes, state),
        }
        for name in names:
            if name not in chosen:
                continue
            t = time.perf_counter()
            b = runners[name]()
            b.seconds = time.perf_counter() - t
            results[name] = b
            print_benchmark(b)
        if args.profile:
            profile_clone(state, args.profile)
    finally:
        env.stop()
        remove(work)
    finish(results, started, m, quick=args.quick, json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
