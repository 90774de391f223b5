"""``cytolens track MOVIE_OR_FOLDER --out DIR``: track cells and write the results.

Only parses arguments, reads the input, calls :func:`cytolens.track.track` /
:func:`~cytolens.track.track_movie` and writes:

- ``DIR/<sequence>_RES/`` a Cell Tracking Challenge result folder
  (``maskTTT.tif`` + ``res_track.txt``; ``RES`` for a movie file);
- ``DIR/tracks.csv`` one row per object and frame;
- ``DIR/lineage.png`` the lineage tree;
- ``DIR/overlay.gif`` the frames with outlines, ids and trajectories;
- ``DIR/tracker.json`` the tracker settings, to rerun the same tracking.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import InputError, MissingFileError
from cytolens.core.files import atomic_path

__all__ = ["command"]

logger = logging.getLogger(__name__)


def _read_movie(path: Path, axes: str | None) -> tuple[Any, str]:
    """The movie as an array ``T(Z)YX`` and the name of the result folder."""
    from cytolens import io

    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    if path.is_dir():
        sequence = io.read_ctc(path)
        return sequence.frames.data, f"{sequence.sequence}_RES"
    image = io.imread(path, axes=axes) if axes else io.imread(path)
    if "T" not in image.axes:
        if image.ndim == 3 and image.axes in ("ZYX", "QYX", "IYX"):
            logger.info("%s: reading the first axis of %r as time", path, image.axes)
            return np.asarray(image.data), "RES"
        raise InputError(
            f"{path} has axes {image.axes!r} and no time axis; give them with --axes, e.g. TYX"
        )
    if "C" in image.axes:
        raise InputError(f"{path} has axes {image.axes!r}; pick one channel first (expected TYX)")
    return image.transpose("TZYX" if "Z" in image.axes else "TYX").data, "RES"


def command(
    movie_or_folder: Annotated[
        Path,
        typer.Argument(help="A movie (TIFF, OME-TIFF, ...) or a Cell Tracking Challenge folder."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results.")],
    labels: Annotated[
        bool,
        typer.Option("--labels", help="The input is a label movie already: track, don't segment."),
    ] = False,
    segmenter: Annotated[
        str, typer.Option(help="Per-frame segmentation: threshold (default), nuclei or auto.")
    ] = "threshold",
    max_distance: Annotated[
        float | None,
        typer.Option(help="Largest displacement between frames, pixels (default: from the data)."),
    ] = None,
    gap_closing: Annotated[
        int, typer.Option(help="Most frames an object may be missing (0: off).")
    ] = 2,
    divisions: Annotated[bool, typer.Option(help="Detect divisions.")] = True,
    axes: Annotated[
        str | None, typer.Option(help="Axes of a movie file without metadata, e.g. TYX.")
    ] = None,
    fps: Annotated[float, typer.Option(help="Frames per second of the overlay GIF.")] = 5.0,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Track cells over time: CTC result folder, tracks CSV, lineage tree and overlay GIF."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cytolens.report import save_figure
    from cytolens.track import overlay_animation, plot_lineage, segment_movie, track
    from cytolens.track.config import make_config

    config = make_config(max_distance=max_distance, gap_closing=gap_closing, divisions=divisions)
    frames, res_name = _read_movie(movie_or_folder, axes)
    result_dir = out / res_name
    source = movie_or_folder.resolve()
    if source in (out.resolve(), result_dir.resolve()):
        raise InputError(f"--out {out} would overwrite the input {movie_or_folder}")
    columns = (TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True, disable=json_summary) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        if labels:
            movie = frames
        else:
            movie = segment_movie(frames, segmenter=segmenter, progress=progress)
        result = track(movie, config=config, progress=progress)
        progress("writing", 0, 4)
        result.to_ctc(result_dir)
        with atomic_path(out / "tracks.csv") as tmp:
            result.tracks.to_csv(tmp, index=False)
        with atomic_path(out / "tracker.json") as tmp:
            tmp.write_text(result.config.model_dump_json(indent=2) + "\n")
        progress("writing", 2, 4)
        if result.n_tracks:
            figure = plot_lineage(result.tracks, title=movie_or_folder.name)
            save_figure(figure, out / "lineage.png")
        display = (np.asarray(movie) > 0).astype(np.uint8) if labels else frames
        overlay_animation(display, result.labels, result.tracks, out / "overlay.gif", fps=fps)
        progress("writing", 4, 4)
    summary = {
        "input": str(movie_or_folder),
        "out": str(out),
        "frames": int(movie.shape[0]),
        "objects": len(result.tracks),
        "tracks": result.n_tracks,
        "divisions": len(result.divisions),
        "max_distance_px": round(float(result.config.max_distance), 2),
    }
    if json_summary:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"{summary['tracks']} tracks, {summary['divisions']} divisions over "
            f"{summary['frames']} frames -> {out}"
        )
