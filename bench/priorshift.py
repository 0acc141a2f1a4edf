"""Can the class priors of the mapped blocks be re-estimated without labels? Offline, on dumps.

    .venv/bin/python bench/priorshift.py [--dir bench/out/calib-few] [--pattern 'k5-*-last.npz']

On the per-fold dumps of ``bench/weightchoice.py --dump`` (the network's uncalibrated
probabilities at the validation and test labels), each fold's probabilities are calibrated
as the package does (a temperature fitted on the validation pixels), then adjusted two ways:

- **EM** (Saerens, Latinne and Decaestecker 2002): the test blocks' class priors are
  re-estimated from their own probabilities alone, by expectation-maximisation, and the
  posteriors re-weighted by new prior / training prior (the training prior taken as the
  validation labels' class shares, or as the mean validation probability);
- **BCTS** (bias-corrected temperature scaling, Alexandari et al. 2020): a temperature and
  one bias per class fitted on the validation pixels instead of the temperature alone.

It prints the test blocks' OA and ECE for each, as the mean of the folds.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import torch

from geomm.model.calibrate import expected_calibration_error, fit_temperature, temper

HERE = Path(__file__).resolve().parent


def em_priors(p: np.ndarray, prior: np.ndarray, iters: int = 100, tol: float = 1e-6
              ) -> np.ndarray:
    """Posteriors re-weighted to the priors EM estimates from ``p`` (N, K) alone."""
    prior = np.clip(prior, 1e-3, None)
    pi, q = prior.copy(), p
    for _ in range(iters):
        q = p * (pi / prior)
        q /= q.sum(axis=1, keepdims=True)
        new = q.mean(axis=0)
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return q


def bcts(pv: np.ndarray, yv: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """``softmax(log p / T + b)`` with ``T`` and ``b`` (K) fitted on the validation pixels."""
    lp = torch.tensor(np.log(np.clip(pv, 1e-7, 1)), dtype=torch.float64)
    y = torch.tensor(yv)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(pv.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, b], max_iter=300)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        out = torch.nn.functional.cross_entropy(lp / torch.exp(log_t) + b, y)
        out.backward()
        return out

    opt.step(loss)
    z = np.log(np.clip(pt, 1e-7, 1)) / float(torch.exp(log_t).detach()) + b.detach().numpy()
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=str(HERE / "out" / "calib-few"))
    ap.add_argument("--pattern", nargs="+", default=["k10-*-last.npz", "k5-*-last.npz",
                                                     "k3-*-last.npz"])
    args = ap.parse_args(argv)
    print("dumps | temperature OA ECE | EM (validation shares) OA ECE | EM (mean validation "
          "probability) OA ECE | BCTS OA ECE")
    for pattern in args.pattern:
        rows = []
        for f in sorted(glob.glob(str(Path(args.dir) / pattern))):
            d = np.load(f)
            pv, yv, pt, yt = d["pv"], d["yv"], d["pt"], d["yt"]
            t = fit_temperature(pv, yv)
            pvt, ptt = temper(pv, t), temper(pt, t)
            shares = np.bincount(yv, minlength=pv.shape[1]) / len(yv)
            out = []
            for q in (ptt, em_priors(ptt, shares), em_priors(ptt, pvt.mean(axis=0)),
                      bcts(pv, yv, pt)):
                out += [100 * float((q.argmax(axis=1) == yt).mean()),
                        expected_calibration_error(q, yt)]
            rows.append(out)
        if rows:
            m = np.mean(rows, axis=0)
            print(f"{pattern} ({len(rows)} folds) | " + " | ".join(
                f"{m[i]:.1f} {m[i + 1]:.3f}" for i in range(0, len(m), 2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
