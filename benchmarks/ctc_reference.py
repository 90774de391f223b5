"""The independent CTC measures of PyPI ``py-ctcmetrics``, for cross-checking ``cytolens.evaluate``.

``py-ctcmetrics`` (``ctc_metrics``) reads result folders in the challenge's
layout, so the label movie (and the track table) are written to a temporary
``01_RES`` folder (``maskTTT.tif``, ``res_track.txt``) and scored against the
sequence's ``01_GT`` folder, one process, no worker pool.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def available() -> bool:
    """Whether ``py-ctcmetrics`` is installed."""
    try:
        import ctc_metrics  # noqa: F401
    except ImportError:
        return False
    return True


def py_ctcmetrics(
    gt_dir: Path, labels: Any, tracks: Any = None, metrics: tuple[str, ...] = ("DET", "SEG", "TRA")
) -> dict[str, float]:
    """Scores of a result movie by ``py-ctcmetrics`` (keys lower-case: det, seg, tra).

    Parameters
    ----------
    gt_dir : Path
        The sequence's ground-truth folder (``.../01_GT`` with ``TRA`` and ``SEG``).
    labels : array_like, shape (T, Y, X)
        Result label movie, every frame of the sequence.
    tracks : pandas.DataFrame, optional
        Result table ``label, begin, end, parent``; without it every label of
        every frame is its own one-frame track (enough for SEG).
    metrics : tuple of str
        ``py-ctcmetrics`` metric names.
    """
    import tifffile
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    labels = np.asarray(labels)
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "01_RES"
        res.mkdir()
        rows = []
        if tracks is None:  # one track per label and frame, so that the result is valid
            out = np.zeros(labels.shape, np.uint16)
            next_id = 1
            for t in range(labels.shape[0]):
                ids = np.unique(labels[t])
                ids = ids[ids > 0]
                lut = np.zeros(int(labels[t].max()) + 1, np.uint16)
                lut[ids] = np.arange(next_id, next_id + ids.size)
                out[t] = lut[labels[t]]
                rows += [(int(i), t, t, 0) for i in lut[ids]]
                next_id += ids.size
            labels = out
        else:
            table = tracks[["label", "begin", "end", "parent"]].to_numpy()
            rows = [tuple(int(v) for v in r) for r in table]
        for t in range(labels.shape[0]):
            tifffile.imwrite(res / f"mask{t:03d}.tif", labels[t].astype(np.uint16))
        (res / "res_track.txt").write_text("".join(f"{a} {b} {c} {d}\n" for a, b, c, d in rows))
        with contextlib.redirect_stdout(io.StringIO()):  # it prints every result dict
            result = evaluate_sequence(str(res), str(gt_dir), list(metrics), threads=1)
    return {k.lower(): round(float(result[k]), 4) for k in metrics if result.get(k) is not None}
