"""Rebuild the bundled demo samples in src/cytolens/data/samples from ../shared/data.

Run from the repository root: ``python scripts/make_samples.py``. Provenance and
licences are in src/cytolens/data/samples/ATTRIBUTION.md.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "src" / "cytolens" / "data" / "samples"

# Fluo-N2DH-SIM+ 01: frames and window of the tracking sample (many cells, divisions)
TRACK_FRAMES = 20
TRACK_WINDOW = (slice(330, 650), slice(0, 320))
SIM_PIXEL_UM = 0.125
# BCCD image in the detector's validation split (src/cytolens/detect/bccd_split.json)
BLOOD_SMEAR = "BloodImage_00005"
# HPA sample in the localization model's validation split (src/cytolens/classify/hpa_split.json),
# labelled Nucleoli (class 2) only
HPA_SAMPLE = "29b2d9e4-bbba-11e8-b2ba-ac1f6b6435d0"


def main() -> None:
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the shared data folder must sit beside the repository")
    OUT.mkdir(parents=True, exist_ok=True)

    # 1. Hoechst nuclei field, BBBC006 (CC0): copied as is.
    shutil.copyfile(
        SHARED / "focus/bbbc006_subset/BBBC006_z_aligned__a01__s1__w1_10.png",
        OUT / "nuclei_bbbc006.png",
    )

    # 2. Widefield bead stack and its measured PSF, flowdec (Apache-2.0).
    for name, target in (("data", "bead.tif"), ("kernel", "bead_psf.tif")):
        vol = tifffile.imread(SHARED / f"deconvolution/flowdec/bead-25pct/{name}.tif")
        tifffile.imwrite(
            OUT / target,
            vol.astype(np.float32),
            compression="zlib",
            metadata={"axes": "ZYX"},
            imagej=False,
        )

    # 3. A short tracking sequence: a window of Fluo-N2DH-SIM+ 01 with its TRA markers.
    seq = SHARED / "tracking/ctc/Fluo-N2DH-SIM+"
    frames = np.stack(
        [tifffile.imread(seq / f"01/t{t:03d}.tif")[TRACK_WINDOW] for t in range(TRACK_FRAMES)]
    )
    masks = np.stack(
        [
            tifffile.imread(seq / f"01_GT/TRA/man_track{t:03d}.tif")[TRACK_WINDOW]
            for t in range(TRACK_FRAMES)
        ]
    )
    res = (1 / SIM_PIXEL_UM, 1 / SIM_PIXEL_UM)
    tifffile.imwrite(
        OUT / "tracking_sim.tif",
        frames,
        compression="zlib",
        imagej=True,
        resolution=res,
        metadata={"axes": "TYX", "unit": "um"},
    )
    tifffile.imwrite(
        OUT / "tracking_sim_tra.tif",
        masks.astype(np.uint16),
        compression="zlib",
        imagej=True,
        resolution=res,
        metadata={"axes": "TYX", "unit": "um"},
    )
    # tracks of the window: lifetime from the markers present, parent kept when it is present too
    parents = {}
    for line in (seq / "01_GT/TRA/man_track.txt").read_text().split("\n"):
        if line.strip():
            label, _b, _e, parent = map(int, line.split())
            parents[label] = parent
    present = {
        int(lab): np.flatnonzero((masks == lab).any(axis=(1, 2))) for lab in np.unique(masks) if lab
    }
    lines = [
        f"{lab} {t[0]} {t[-1]} {parents[lab] if parents[lab] in present else 0}"
        for lab, t in sorted(present.items())
    ]
    (OUT / "tracking_sim_man_track.txt").write_text("\n".join(lines) + "\n")

    # 4. A blood smear of the BCCD validation split (MIT) with its LabelImg annotation.
    bccd = SHARED / "detection/bccd"
    shutil.copyfile(bccd / f"JPEGImages/{BLOOD_SMEAR}.jpg", OUT / "blood_smear.jpg")
    shutil.copyfile(bccd / f"Annotations/{BLOOD_SMEAR}.xml", OUT / "blood_smear.xml")

    # 5. One HPA sample (4 channel PNGs), named so that read_hpa(samples, "hpa_nucleoli") reads it.
    for colour in ("red", "green", "blue", "yellow"):
        src = SHARED / f"classification/hpa/images/{HPA_SAMPLE}_{colour}.png"
        shutil.copyfile(src, OUT / f"hpa_nucleoli_{colour}.png")

    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
