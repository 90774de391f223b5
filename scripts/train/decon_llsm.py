"""Train the shipped network deconvolution model ``decon-llsm-v1`` on the CPU.

Reproduces ``src/cytolens/models/weights/decon-llsm-v1``: a residual 3-D
RestoreUNet (channels 8, 16, 32) trained to reproduce Wiener-Butterworth
deconvolution (at its best iteration count on simulated volumes) of simulated
spheres, filaments and points blurred with the measured lattice light-sheet PSF
``../shared/data/deconvolution/llsm_psf/psf.tif`` (pycudadecon test data, MIT;
cropped to 31 x 25 x 25 voxels around its peak, which keeps > 99.9 % of its
flux) plus Poisson noise. Seeds: training volumes 0, WB iteration choice 1,
held-out (applicability calibration) 2; the benchmark uses other seeds.

Usage::

    nice -n 10 .venv/bin/python scripts/train/decon_llsm.py [--steps 500] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cytolens.restore.network_deconvolution import train_deconvolver

ROOT = Path(__file__).resolve().parents[2]
PSF = ROOT.parent / "shared" / "data" / "deconvolution" / "llsm_psf" / "psf.tif"
SHIPPED = ROOT / "src" / "cytolens" / "models" / "weights" / "decon-llsm-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("cytolens.restore.deconvolution").setLevel(logging.WARNING)
    folder = train_deconvolver(
        PSF,
        args.out,
        name="decon-llsm-v1",
        steps=args.steps,
        threads=args.threads,
        training_command="nice -n 10 python scripts/train/decon_llsm.py",
    )
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
