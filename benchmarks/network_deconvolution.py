"""Benchmark: network deconvolution (``decon-llsm-v1``) vs Wiener-Butterworth at its best.

On simulated held-out volumes (spheres, filaments, points; seeds never used in
training) blurred with the measured lattice light-sheet PSF of the shared data
plus Poisson noise: PSNR to the ground truth (after a least-squares affine
intensity fit, as the CARE evaluation does) of the network's single forward
pass and of cytolens Wiener-Butterworth RL at its best iteration count (chosen
on these same volumes, which favours WB), and the seconds of each on one
larger volume, on the CPU, in one process. Also: the applicability score of
held-out volumes and the warning for a PSF other than the model's.

Run from the repository root::

    .venv/bin/python benchmarks/network_deconvolution.py [--quick]

``--quick``: 3 held-out volumes instead of 8 and a 48 x 192 x 192 timing
volume instead of 64 x 256 x 256. Writes
``benchmarks/results/network_deconvolution.json`` and ``.md`` and a figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from cytolens.restore import deconvolve, gaussian_psf, load_psf
from cytolens.restore.network_deconvolution import (
    DEFAULT_DECONVOLVER,
    deconvolve_network,
    psnr_affine,
    simulate_volume,
)
from harness import Benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = (
    Path(os.environ.get("CYTOLENS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "deconvolution"
)
PSF_FILE = DATA / "llsm_psf" / "psf.tif"
CROP = (31, 25, 25)  # as the model was trained (see scripts/train/decon_llsm.py)
SHAPE = (32, 64, 64)  # as the training volumes
SEED0 = 1000  # training used seeds 0-2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not PSF_FILE.is_file():
        sys.exit(f"missing {PSF_FILE}: the shared data are needed")
    import torch

    torch.set_num_threads(2)
    from cytolens.models import load

    bench = Benchmark(
        "network_deconvolution",
        "Network deconvolution (one forward pass of a 3-D U-Net trained to reproduce "
        "Wiener-Butterworth) vs Wiener-Butterworth RL at its best iteration count, on "
        "simulated held-out volumes blurred with the measured lattice light-sheet PSF.",
    )
    n_vol = 3 if args.quick else 8
    big = (48, 192, 192) if args.quick else (64, 256, 256)
    bench.set("setup.quick", bool(args.quick))
    bench.set("setup.n_volumes", n_vol)
    bench.set("setup.volume_shape", list(SHAPE))
    bench.set("setup.timing_shape", list(big))
    bench.set("setup.torch_threads", 2)

    psf = load_psf(PSF_FILE, crop=CROP)
    model = load(DEFAULT_DECONVOLVER, device="cpu")
    vols = [simulate_volume(psf, SHAPE, rng=SEED0 + i) for i in range(n_vol)]

    # WB PSNR per iteration count on the held-out volumes; its best count
    wb_curve = {}
    for it in range(1, 13):
        wb_curve[it] = float(
            np.mean(
                [psnr_affine(deconvolve(o, psf, iterations=it, device="cpu"), t) for t, o in vols]
            )
        )
    best = max(wb_curve, key=lambda k: wb_curve[k])
    infos = []
    net_psnr = []
    for t, o in vols:
        out, info = deconvolve_network(o, model=model, device="cpu", return_info=True)
        net_psnr.append(psnr_affine(out, t))
        infos.append(info)
    obs_psnr = float(np.mean([psnr_affine(o, t) for t, o in vols]))
    psnr_net = float(np.mean(net_psnr))
    psnr_wb = wb_curve[best]
    bench.set("network_deconvolution.wb_best_iterations", best)
    bench.set(
        "network_deconvolution.wb_psnr_by_iterations", {k: round(v, 3) for k, v in wb_curve.items()}
    )
    bench.set("network_deconvolution.psnr_observed", round(obs_psnr, 3))
    bench.set("network_deconvolution.psnr_wb", round(psnr_wb, 3))
    bench.set("network_deconvolution.psnr_network", round(psnr_net, 3))
    bench.set("network_deconvolution.psnr_gap_db", round(psnr_wb - psnr_net, 3))
    bench.set("network_deconvolution.heldout_ood_scores", [round(i["ood_score"], 3) for i in infos])
    bench.set("network_deconvolution.heldout_in_domain", sum(bool(i["in_domain"]) for i in infos))

    # timing on one larger volume (objects scaled with the volume)
    scale = int(np.prod(big) / np.prod(SHAPE))
    _t, obs_big = simulate_volume(
        psf, big, rng=SEED0 + 99, n_spheres=6 * scale, n_filaments=4 * scale, n_points=12 * scale
    )
    t_wb = bench.time(deconvolve, obs_big, psf, iterations=best, device="cpu", repeat=3)
    t_net = bench.time(
        deconvolve_network, obs_big, model=model, device="cpu", tile_shape=big, repeat=3
    )
    bench.set("network_deconvolution.wb_s", round(t_wb.median_s, 3))
    bench.set("network_deconvolution.network_s", round(t_net.median_s, 3))
    bench.set("network_deconvolution.speedup_vs_wb", round(t_wb.median_s / t_net.median_s, 3))
    t_wb2 = bench.time(deconvolve, obs_big, psf, iterations=2, device="cpu", repeat=3)
    bench.set("network_deconvolution.wb_2_iterations_s", round(t_wb2.median_s, 3))

    # another PSF: the warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deconvolve_network(vols[0][1], gaussian_psf((15, 15, 15), 2.0), model=model, device="cpu")
    fired = any("trained for another PSF" in str(w.message) for w in caught)
    bench.set("network_deconvolution.other_psf_warning", fired)
    # applicability of inputs unlike the training data
    other = {
        "objects blurred with a Gaussian PSF (sigma 2 px)": simulate_volume(
            gaussian_psf((15, 15, 15), 2.0), SHAPE, rng=SEED0 + 50
        )[1],
        "dense spheres (10x)": simulate_volume(
            psf, SHAPE, rng=SEED0 + 51, n_spheres=60, n_filaments=0, n_points=0
        )[1],
        "uniform random noise": np.random.default_rng(SEED0 + 52).random(SHAPE).astype(np.float32)
        * 50,
    }
    ood_rows = []
    for label, vol in other.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = deconvolve_network(vol, model=model, device="cpu", return_info=True)
        ood_rows.append(
            {"input": label, "ood_score": info["ood_score"], "in_domain": info["in_domain"]}
        )
    for i, info in enumerate(infos):
        ood_rows.append(
            {
                "input": f"held-out volume {SEED0 + i}",
                "ood_score": info["ood_score"],
                "in_domain": info["in_domain"],
            }
        )
    bench.set("network_deconvolution.ood_other_inputs", ood_rows[: len(other)])
    bench.table("Applicability (ood_score > 1: out of the training domain)", ood_rows)

    bench.table(
        "PSNR to the ground truth (dB, affine fit; mean over held-out volumes) and time",
        [
            {"method": "observed (blurred + Poisson)", "psnr_db": obs_psnr, "s": None},
            {
                "method": f"Wiener-Butterworth RL, {best} iterations (best)",
                "psnr_db": psnr_wb,
                "s": t_wb.median_s,
            },
            {
                "method": "Wiener-Butterworth RL, 2 iterations",
                "psnr_db": wb_curve[2],
                "s": t_wb2.median_s,
            },
            {
                "method": f"network ({DEFAULT_DECONVOLVER})",
                "psnr_db": psnr_net,
                "s": t_net.median_s,
            },
        ],
    )
    bench.text(
        f"PSNR on {n_vol} held-out volumes of {SHAPE} (seeds {SEED0}-{SEED0 + n_vol - 1}); "
        f"seconds: median of 3 runs on one {big} volume, CPU, torch with 2 threads "
        f"(the whole volume as one tile for the network). Gap WB - network: "
        f"{psnr_wb - psnr_net:.2f} dB; speed-up vs WB at {best} iterations: "
        f"{t_wb.median_s / t_net.median_s:.2f}x. A Gaussian PSF (sigma 2 px) passed with the "
        f"model: warning 'trained for another PSF' fired: {fired}. Held-out ood_scores: "
        + ", ".join(f"{i['ood_score']:.2f}" for i in infos)
        + "."
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, o = vols[0]
    z = int(np.argmax(t.sum(axis=(1, 2))))
    panels = {
        "truth": t,
        "observed": o,
        f"WB ({best} it.)": deconvolve(o, psf, iterations=best, device="cpu"),
        "network": deconvolve_network(o, model=model, device="cpu"),
    }
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, (title, img) in zip(axes, panels.items(), strict=True):
        ax.imshow(img[z], cmap="magma")
        ax.set_title(title)
        ax.axis("off")
    bench.figure(fig, "slices", f"Plane z={z} of held-out volume seed {SEED0}.")
    json_path, md_path = bench.write()
    print(json_path, md_path)


if __name__ == "__main__":
    main()
