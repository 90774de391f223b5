"""Pictures of tracking results: lineage trees (Matplotlib) and overlay animations (GIF, Pillow)."""

from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.core.files import atomic_path
from cytolens.core.normalize import sample_percentiles
from cytolens.core.tables import FRAME
from cytolens.track.lineage import ctc_table

__all__ = ["overlay_animation", "plot_lineage", "track_color"]


def track_color(track_id: int) -> tuple[float, float, float]:
    """A bright colour for a track id, well apart from its neighbours' (golden-ratio hues).

    Examples
    --------
    >>> track_color(1) != track_color(2)
    True
    """
    hue = (track_id * 0.618033988749895) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.75, 1.0)


def _layout(table: pd.DataFrame) -> dict[int, float]:
    """Vertical position of each track: leaves in depth-first order, mothers between daughters."""
    children: dict[int, list[int]] = {}
    for label, parent in zip(table["label"], table["parent"], strict=True):
        if parent > 0:
            children.setdefault(int(parent), []).append(int(label))
    begin = dict(zip(table["label"].astype(int), table["begin"].astype(int), strict=True))
    known = set(begin)
    roots = [
        int(lab) for lab, p in zip(table["label"], table["parent"], strict=True) if p not in known
    ]
    roots.sort(key=lambda lab: (begin[lab], lab))
    y: dict[int, float] = {}
    row = 0.0
    for root in roots:
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:  # iterative post-order so deep lineages cannot overflow the recursion
            label, done = stack.pop()
            kids = sorted(children.get(label, []), key=lambda k: (begin[k], k))
            if done:
                y[label] = float(np.mean([y[k] for k in kids]))
            elif kids:
                stack.append((label, True))
                stack.extend((k, False) for k in reversed(kids))
            else:
                y[label] = row
                row += 1
    return y


def plot_lineage(tracks: pd.DataFrame, *, ax: Any = None, title: str | None = None) -> Any:
    """Draw the lineage forest: one horizontal line per track, connectors at divisions and gaps.

    Parameters
    ----------
    tracks : pandas.DataFrame
        A tracks table (``track_id, frame, parent_track_id``) or a CTC table
        (``label, begin, end, parent``).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure sized to the number of tracks.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> table = pd.DataFrame({"label": [1, 2, 3], "begin": [0, 5, 5], "end": [4, 9, 7],
    ...                       "parent": [0, 1, 1]})
    >>> fig = plot_lineage(table)
    >>> len(fig.axes[0].lines)
    5
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    table = tracks if "begin" in tracks.columns else ctc_table(tracks)
    if table.empty:
        raise InputError("no tracks to draw")
    y = _layout(table)
    if ax is None:
        height = min(max(3.0, 0.12 * len(y) + 1.5), 30.0)
        fig, ax = plt.subplots(figsize=(8, height))
    else:
        fig = ax.figure
    info = table.set_index("label")
    width = 2.0 if len(y) < 60 else 1.0
    for label, row in info.iterrows():
        color = track_color(int(label))
        ax.plot([row["begin"], row["end"] + 1], [y[label]] * 2, color=color, lw=width)
        if row["parent"] in info.index:
            end = info.loc[row["parent"], "end"] + 1
            ax.plot([end, row["begin"]], [y[row["parent"]], y[label]], color="0.4", lw=0.8, ls="-")
    ax.set_xlabel("frame")
    ax.set_yticks([])
    ax.invert_yaxis()
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    n_div = int((table[table["parent"] > 0].groupby("parent").size() >= 2).sum())
    ax.set_title(title or f"{len(table)} tracks, {n_div} divisions")
    fig.tight_layout()
    return fig


def _display_range(frames: Any) -> tuple[float, float]:
    """Percentiles (0.5, 99.8) over up to 8 evenly spaced frames, so the movie does not flicker."""
    lo, hi = sample_percentiles(frames, 0.5, 99.8, max_pixels=1 << 20)
    return lo, max(hi, lo + 1e-6)


def overlay_animation(
    frames: Any,
    labels: Any,
    tracks: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    fps: float = 5.0,
    tail: int = 10,
    max_size: int = 512,
) -> Path:
    """Write a GIF of the frames with track outlines, ids and recent trajectories.

    Parameters
    ----------
    frames : array_like
        Raw movie ``TYX`` (``TZYX`` is shown as maximum projections).
    labels : array_like
        Movie relabelled by track (``TrackingResult.labels``), same shape.
    tracks : pandas.DataFrame
        ``TrackingResult.tracks`` (``track_id, frame, y_px, x_px``).
    path : str or path-like
        Output ``.gif``, written atomically.
    fps : float
        Frames per second.
    tail : int
        Frames of trajectory drawn behind each object.
    max_size : int
        Longest side of the animation in pixels (frames are subsampled).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        For ``fps`` that is not a positive number, or frames and labels of
        different shapes (checked before any drawing).

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.track import track
    >>> movie = np.zeros((3, 24, 24), np.uint16)
    >>> for t in range(3):
    ...     movie[t, 8:14, 4 + 3 * t : 10 + 3 * t] = 1
    >>> res = track(movie)
    >>> gif = Path(tempfile.mkdtemp()) / "a.gif"
    >>> out = overlay_animation(movie * 100, res.labels, res.tracks, gif)
    >>> out.stat().st_size > 0
    True
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw
    from skimage.segmentation import find_boundaries

    if not (isinstance(fps, (int, float, np.number)) and np.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if frames.shape != labels.shape:
        raise InputError(f"frames {tuple(frames.shape)} and labels {tuple(labels.shape)} differ")
    if frames.ndim not in (3, 4):
        raise InputError(f"frames must be a movie T(Z)YX, got shape {tuple(frames.shape)}")
    step = max(1, int(np.ceil(max(frames.shape[-2:]) / max_size)))
    lo, hi = _display_range(frames)
    positions = {t: g for t, g in tracks.groupby(FRAME)}
    images = []
    for t in range(frames.shape[0]):
        raw = np.asarray(frames[t], np.float32)
        lab = np.asarray(labels[t])
        if raw.ndim == 3:
            raw, lab = raw.max(axis=0), lab.max(axis=0)
        gray = np.clip((raw - lo) / (hi - lo), 0, 1)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        edges = find_boundaries(lab, mode="inner")
        ids = np.unique(lab[edges])
        palette = np.array([track_color(int(i)) for i in ids]).reshape(-1, 3)
        rgb[edges] = palette[np.searchsorted(ids, lab[edges])]
        image = PILImage.fromarray((rgb[::step, ::step] * 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        window = [positions[s] for s in range(max(0, t - tail), t + 1) if s in positions]
        recent = pd.concat(window) if window else tracks.iloc[:0]
        for tid, g in recent.groupby("track_id"):
            color = tuple(int(255 * c) for c in track_color(int(tid)))
            pts = list(zip(g["x_px"] / step, g["y_px"] / step, strict=True))
            if len(pts) > 1:
                draw.line(pts, fill=color, width=1)
            if g[FRAME].iloc[-1] == t:
                draw.text((pts[-1][0] + 2, pts[-1][1] - 5), str(int(tid)), fill=color)
        draw.text((4, 2), f"t={t}", fill=(255, 255, 255))
        images.append(image.convert("P", palette=PILImage.Palette.ADAPTIVE))
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=int(1000 / fps),
            loop=0,
        )
    return path
