"""Make the golden outputs of the shipped models (run once, before a refactor).

The files in ``tests/models/golden/`` are the predictions of every shipped
model on the bundled samples, made through the public API on the CPU.
``tests/models/test_contract.py`` asserts that the models still give them,
so a change to loading, cards or normalization that alters a prediction
fails. Regenerate only when a model is deliberately retrained::

    .venv/bin/python tests/models/make_golden.py

Inputs (small, so the comparison is quick):

- focus: ``rate_focus`` on the 520 x 696 BBBC006 nuclei sample (84 px patches);
- segment: ``nuclei`` on the 256 x 256 top-left crop of the same image,
  diameter given (16 px) and estimated;
- detect: ``detect`` on the blood smear sample (all boxes, ``min_score`` 0.05);
- classify: ``localization`` on the HPA nucleoli sample, and ``predict_cells``
  of its cells.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("golden")


def compute() -> dict[str, np.ndarray]:
    """Outputs of every shipped model on the bundled samples, by file stem.

    Examples
    --------
    >>> out = compute()  # doctest: +SKIP
    >>> sorted(out)  # doctest: +SKIP
    ['classify_cells', 'classify_image', 'detect_boxes', 'focus_probs', ...]
    """
    import torch

    from cytolens import data
    from cytolens.classify import model as cm
    from cytolens.classify.cells import segment_cells
    from cytolens.detect.model import detect
    from cytolens.focus.rate import rate_focus
    from cytolens.segment.model import nuclei

    torch.manual_seed(0)
    out: dict[str, np.ndarray] = {}
    img = np.asarray(data.nuclei().data)
    res = rate_focus(img, device="cpu")
    out["focus_probs"] = res.patches[[f"p{k}" for k in range(11)]].to_numpy(np.float64)
    crop = img[:256, :256]
    out["segment_given"] = nuclei(crop, diameter=16, device="cpu").astype(np.uint16)
    out["segment_estimated"] = nuclei(crop, device="cpu").astype(np.uint16)
    boxes = detect(data.blood_smear().data, min_score=0.05, device="cpu")
    out["detect_boxes"] = boxes[["xmin_px", "ymin_px", "xmax_px", "ymax_px", "score"]].to_numpy(
        np.float64
    )
    out["detect_classes"] = np.array(boxes["class"].tolist())
    hpa = data.hpa_cells()
    loc = cm.localization(hpa, device="cpu")
    out["classify_image"] = loc.probabilities.astype(np.float64)
    m = cm.LocalizationModel.load("hpa-v1", device="cpu")
    _nuc, cells = segment_cells(cm.as_cyx_float(hpa), nucleus_method="classical")
    probs, _ids = m.predict_cells(hpa, cells)
    out["classify_cells"] = probs.astype(np.float64)
    return out


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    out = compute()
    for stem, arr in out.items():
        np.save(GOLDEN / f"{stem}.npy", arr, allow_pickle=False)
    (GOLDEN / "README.json").write_text(
        json.dumps({k: list(v.shape) for k, v in out.items()}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
