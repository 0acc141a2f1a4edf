"""geomm batch across hosts: a Dask scheduler and two workers, each in its own network
namespace (``ip netns`` + veth + a bridge, addresses of these namespaces only), sharing only
the file system. One worker host is cut off mid-job (its link down, or every process on it
killed): the job still completes, with outputs identical to a single-process run. A
scheduler address on the segment with no host behind it is one line within seconds.

Needs root and iproute2 (Debian ``iproute2``): skipped on a user's machine without them,
failed under ``GEOMM_REQUIRE_TOOLS=1`` (CI).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batchcase import blocks_done, grid_args, read, same

from geomm.batch._blockrun import read_record
from geomm.batch.runner import MANIFEST, SCHEDULER_TIMEOUT_S
from tests.conftest import need_program, require_or_skip

NET = "10.213.0"
SCHED = f"tcp://{NET}.1:8786"
BIN = Path(sys.executable).parent
TTL_S = 4
"""The scheduler's worker-ttl here: a worker silent this long is given up (Dask's default is
5 minutes, which a user with flaky hosts would lower the same way)."""


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class Hosts:
    """Three namespaces: ``s`` (scheduler, client, the bridge) and workers ``a``, ``b``."""

    def __init__(self, ip: str) -> None:
        self.ip, tag = ip, f"g{os.getpid() % 100000}"
        self.ns = {h: f"{tag}{h}" for h in "sab"}
        self.addr = {"s": f"{NET}.1", "a": f"{NET}.2", "b": f"{NET}.3"}
        self.port = {h: f"{tag}p{h}" for h in "ab"}  # the bridge's end of each host's link
        self.procs: list[subprocess.Popen] = []

    def up(self) -> None:
        ip, s = self.ip, self.ns["s"]
        for ns in self.ns.values():
            _sh(ip, "netns", "add", ns)
            _sh(ip, "-n", ns, "link", "set", "lo", "up")
        _sh(ip, "-n", s, "link", "add", "br0", "type", "bridge")
        _sh(ip, "-n", s, "addr", "add", f"{self.addr['s']}/24", "dev", "br0")
        _sh(ip, "-n", s, "link", "set", "br0", "up")
        for h in "ab":
            peer = f"{self.port[h]}w"
            _sh(ip, "link", "add", self.port[h], "type", "veth", "peer", "name", peer)
            _sh(ip, "link", "set", self.port[h], "netns", s)
            _sh(ip, "link", "set", peer, "netns", self.ns[h])
            _sh(ip, "-n", s, "link", "set", self.port[h], "master", "br0", "up")
            _sh(ip, "-n", self.ns[h], "addr", "add", f"{self.addr[h]}/24", "dev", peer)
            _sh(ip, "-n", self.ns[h], "link", "set", peer, "up")

    def run(self, host: str, *cmd: str, env: dict[str, str] | None = None,
            **kw) -> subprocess.Popen:
        proc = subprocess.Popen([self.ip, "netns", "exec", self.ns[host], *cmd],
                                env={**os.environ, **(env or {})}, text=True,
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def cut(self, host: str) -> None:
        """The host's cable pulled: its link to the bridge goes down."""
        _sh(self.ip, "-n", self.ns["s"], "link", "set", self.port[host], "down")

    def kill_all(self, host: str) -> None:
        """Every process of the host killed (the machine lost)."""
        out = subprocess.run([self.ip, "netns", "pids", self.ns[host]], capture_output=True,
                             text=True, check=True).stdout.split()
        for pid in out:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def down(self) -> None:
        for h in self.ns:
            try:
                self.kill_all(h)
            except subprocess.CalledProcessError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for ns in self.ns.values():
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    why = "the multi-host batch tests put each Dask host in a network namespace"
    ip = need_program("ip", why=why, package="iproute2")
    if os.geteuid() != 0:
        require_or_skip(f"network namespaces need root - {why}")
    h = Hosts(ip)
    try:
        h.up()
    except subprocess.CalledProcessError as exc:
        h.down()
        require_or_skip(f"cannot create network namespaces here ({exc.stderr.strip()}) - {why}")
    yield h
    h.down()


def _cluster(h: Hosts, log: Path) -> None:
    """A scheduler on host s and one single-thread worker (with its nanny) on each of a, b."""
    quiet = {"OMP_NUM_THREADS": "1", "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": f"{TTL_S}s"}
    with open(log, "a") as f:
        h.run("s", str(BIN / "dask"), "scheduler", "--host", h.addr["s"], "--port", "8786",
              "--no-dashboard", env=quiet, stdout=f, stderr=f)
        for w in "ab":
            h.run(w, str(BIN / "dask"), "worker", SCHED, "--host", h.addr[w], "--name",
                  f"host-{w}", "--nthreads", "1", "--no-dashboard", env=quiet,
                  stdout=f, stderr=f)
    wait = h.run("s", sys.executable, "-c",
                 "from distributed import Client\n"
                 f"c = Client({SCHED!r}, timeout=60)\n"
                 "c.wait_for_workers(2, timeout=120)\n"
                 "print(sorted(w['name'] for w in c.scheduler_info()['workers'].values()))",
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = wait.communicate(timeout=180)
    assert wait.returncode == 0 and "host-a" in out and "host-b" in out, out + log.read_text()


def _workers(out: Path) -> set[str]:
    """The worker processes that wrote the complete blocks under ``out``."""
    return {rec["worker"] for p in (out / "blocks").glob("*")
            if (rec := read_record(p)) is not None} if (out / "blocks").exists() else set()


@pytest.mark.parametrize("fault", ["link down", "all processes killed"])
def test_a_worker_host_lost_mid_job_leaves_outputs_identical(hosts, job, single, tmp_path,
                                                              fault):
    log = tmp_path / "cluster.log"
    _cluster(hosts, log)
    out = tmp_path / "out"
    client = hosts.run("s", str(BIN / "geomm"), *grid_args(job, out, "--scheduler", SCHED),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while len(_workers(out)) < 2:  # both hosts have written blocks
        assert client.poll() is None, client.stdout.read()
        assert time.monotonic() - t0 < 240, log.read_text()
        time.sleep(0.05)
    done_at_cut = blocks_done(out)
    (hosts.cut if fault == "link down" else hosts.kill_all)("a")
    text, _ = client.communicate(timeout=300)
    assert client.returncode == 0, text + log.read_text()
    assert done_at_cut < 12, "the job ended before the host was lost: make blocks slower"
    same(read(out), read(single))
    doc = json.loads((out / MANIFEST).read_text())
    assert {b["status"] for b in doc["blocks"].values()} == {"done"} and len(doc["blocks"]) == 12
    assert f"the cluster at {SCHED}" in text
    assert len({b["worker"] for b in doc["blocks"].values()}) >= 2


def test_a_scheduler_address_with_no_host_behind_is_one_line_within_seconds(hosts, job,
                                                                             tmp_path):
    absent = f"tcp://{NET}.9:8786"  # on the segment, nobody answers ARP: no refusal, silence
    t0 = time.monotonic()
    proc = hosts.run("b", str(BIN / "geomm"), *grid_args(job, tmp_path / "o", "--scheduler",
                                                          absent),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geomm: error: cannot reach the Dask "
                                                   f"scheduler at {absent}"), err
    assert took < SCHEDULER_TIMEOUT_S + 15, took
    assert not (tmp_path / "o").exists()  # nothing written for a job that never started
