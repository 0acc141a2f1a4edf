"""Co-registration throughput and peak memory of geomm against plain reads and GDAL.

    .venv/bin/python bench/coregister.py [--quick] [--repeats N]

Cases (every run in a fresh process, so each peak RSS is clean; best time of N repeats):
  (a) aligned, native resolution: the 12 bands of the mirror-tiled 4x4 sample (6144 x 3072 px
      at 10 m). geomm ``coregister`` + every chunk of every layer (data and valid) streamed
      with ``da.store`` into a null sink on 2 threads, against a single-threaded
      ``src.read(1)`` of every band file (the ceiling: same output pixels). Target >= 0.9.
  (b) warp to EPSG:3035 at 10 m, bilinear, the 3 visible bands: geomm (2 threads) against
      ``gdalwarp -wo NUM_THREADS=1`` per band file. Target >= 1.5. ``rasterio.warp.reproject``
      (2 threads, whole array) is an extra reference.
  (c) memory: geomm's peak RSS for case (a) on the 8x8 scene over the 4x4 scene; <= 1.15.
(a) and (b) are also run on the 8x8 scene (12288 x 6144 px), where start-up costs weigh less.
Mpx/s counts output pixels of all bands (not the valid masks). Results also go to
``bench/out/coregister.json``. Scenes are cached under ``$GEOMM_CACHE/bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "coregister.json"


def _run_case(case: str, n: int) -> dict:
    # This process stays small (no numpy/rasterio): a child's ru_maxrss starts at its parent's.
    proc = subprocess.run([sys.executable, str(HERE / "_cases.py"), case, str(n)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"case {case} (scene {n}x{n}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(runs: list[dict]) -> dict:
    """Fastest run's time, largest peak RSS over the runs."""
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "mpx_s": best["pixels"] / best["seconds"] / 1e6,
            "maxrss_mb": max(r["maxrss_mb"] for r in runs), "repeats": len(runs)}


def measure(plan: list[tuple[str, int]], repeats: int) -> dict[tuple[str, int], dict]:
    """Run every (case, scene) ``repeats`` times, interleaved so that noise hits all alike."""
    runs: dict[tuple[str, int], list[dict]] = {key: [] for key in plan}
    for i in range(repeats):
        for case, n in plan:
            r = _run_case(case, n)
            runs[(case, n)].append(r)
            print(f"  [{i + 1}/{repeats}] {case:<14} {n}x{n}: {r['seconds']:6.2f} s, "
                  f"{r['pixels'] / r['seconds'] / 1e6:7.1f} Mpx/s, "
                  f"peak RSS {r['maxrss_mb']:6.0f} MB", flush=True)
    return {key: _best(v) for key, v in runs.items()}


def _machine() -> dict:
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "n/a"

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "ram_gib": round(ram, 1), "platform": platform.platform(),
            "GDAL_CACHEMAX": os.environ.get("GDAL_CACHEMAX", "unset (GDAL: 5% of RAM)"),
            "python": platform.python_version(), "gdalwarp": sh("gdalwarp", "--version"),
            "commit": sh("git", "rev-parse", "--short", "HEAD"),
            "dirty": bool(sh("git", "status", "--porcelain", "--", "geomm") not in ("", "n/a"))}


def _rows(res: dict, n: int, big: int) -> list[dict]:
    a_g, a_b = res[("geomm_aligned", n)], res[("plain_read", n)]
    b_g, b_b, b_r = res[("geomm_warp", n)], res[("gdalwarp", n)], res[("reproject", n)]
    c_big = res[("geomm_aligned", big)]
    rows = [
        (f"(a) aligned native res, 12 bands, {n}x{n}", a_g, a_b, "plain read(1), 1 thread",
         ">=", 0.9),
        (f"(a) same, {big}x{big} scene", c_big, res[("plain_read", big)],
         "plain read(1), 1 thread", ">=", 0.9),
        (f"(b) warp EPSG:3035 10 m bilinear, 3 bands, {n}x{n}", b_g, b_b, "gdalwarp, 1 thread",
         ">=", 1.5),
        (f"(b) same, {big}x{big} scene", res[("geomm_warp", big)], res[("gdalwarp", big)],
         "gdalwarp, 1 thread", ">=", 1.5),
        ("(b') extra reference", b_g, b_r, "rasterio reproject, 2 threads", None, None),
    ]
    out = [{"case": name, "geomm": g["mpx_s"], "baseline": b["mpx_s"], "baseline_is": what,
            "unit": "Mpx/s", "ratio": g["mpx_s"] / b["mpx_s"], "target": op and f"{op} {t}",
            "pass": None if op is None else g["mpx_s"] / b["mpx_s"] >= t}
           for name, g, b, what, op, t in rows]
    ratio = c_big["maxrss_mb"] / a_g["maxrss_mb"]
    out.append({"case": f"(c) memory: peak RSS of (a), {big}x{big} / {n}x{n} scene",
                "geomm": c_big["maxrss_mb"], "baseline": a_g["maxrss_mb"],
                "baseline_is": f"geomm on the {n}x{n} scene", "unit": "MB", "ratio": ratio,
                "target": "<= 1.15", "pass": ratio <= 1.15})
    return out


def _table(rows: list[dict], res: dict) -> str:
    lines = ["| case | geomm | baseline | ratio | target | pass |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        ok = "—" if r["pass"] is None else ("yes" if r["pass"] else "**NO**")
        lines.append(f"| {r['case']} | {r['geomm']:.1f} {r['unit']} | {r['baseline']:.1f} "
                     f"{r['unit']} ({r['baseline_is']}) | {r['ratio']:.2f} | "
                     f"{r['target'] or '—'} | {ok} |")
    lines += ["", "| run | scene | best s | Mpx/s | Mpx | peak RSS MB | RSS after imports MB |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for (case, n), r in res.items():
        lines.append(f"| {case} | {n}x{n} | {r['seconds']:.2f} | {r['mpx_s']:.1f} | "
                     f"{r['pixels'] / 1e6:.1f} | {r['maxrss_mb']:.0f} | "
                     f"{r['rss_import_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2x2 scene (memory: 4x4 vs 2x2), one repeat")
    ap.add_argument("--repeats", type=int, help="repeats per case (default 3; --quick 1)")
    args = ap.parse_args(argv)
    if shutil.which("gdalwarp") is None:
        sys.exit("bench/coregister.py: gdalwarp (the baseline of case b) is not on PATH; install "
                 "GDAL's command-line tools (Debian/Ubuntu: apt-get install gdal-bin; conda: "
                 "conda install -c conda-forge gdal) and run it again")
    n, big = (2, 4) if args.quick else (4, 8)
    repeats = args.repeats or (1 if args.quick else 3)
    t0 = time.perf_counter()
    machine = _machine()
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    m = machine
    print(f"# geomm co-registration benchmark\n\ncommand: `{command}`\n"
          f"machine: {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['platform']}, "
          f"Python {m['python']}, {m['gdalwarp']}\nGDAL_CACHEMAX: {m['GDAL_CACHEMAX']}\n"
          f"geomm commit: {m['commit']}"
          f"{' (geomm/ has uncommitted changes)' if m['dirty'] else ''}", flush=True)
    print(f"building/reusing scenes {n}x{n}, {big}x{big} ...", flush=True)
    subprocess.run([sys.executable, str(HERE / "_scene.py"), str(n), str(big)], check=True,
                   cwd=ROOT)
    plan = [(c, n) for c in ("geomm_aligned", "plain_read", "geomm_warp", "gdalwarp",
                             "reproject")] + [(c, big) for c in ("geomm_aligned", "plain_read",
                                                                 "geomm_warp", "gdalwarp")]
    res = measure(plan, repeats)
    rows = _rows(res, n, big)
    any_run = next(iter(res.values()))
    machine.update({k: any_run[k] for k in ("gdal", "rasterio", "dask")})
    total = time.perf_counter() - t0
    print(f"\nrasterio {machine['rasterio']} (GDAL {machine['gdal']}), dask "
          f"{machine['dask']}; best of {repeats}; total {total:.0f} s\n")
    print(_table(rows, res))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "command": command, "machine": machine, "repeats": repeats, "scene": n,
        "memory_scene": big, "total_seconds": total, "rows": rows,
        "runs": [{"case": c, "scene": s, **r} for (c, s), r in res.items()]}, indent=1))
    print(f"\nwrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
