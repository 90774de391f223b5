"""``cytolens track MOVIE_OR_FOLDER --out DIR``: track cells and write the results.

Only parses arguments, reads the input, calls :func:`cytolens.track.track` /
:func:`~cytolens.track.segment_movie` and writes:

- ``DIR/<sequence>_RES/`` a Cell Tracking Challenge result folder
  (``maskTTT.tif`` + ``res_track.txt``, numbered like the input's frames;
  ``RES`` for a movie file);
- ``DIR/tracks.csv`` one row per object and frame: ``track_id, frame, label,
  (z_px,) y_px, x_px, area_px, parent_track_id`` (``frame`` is the input's
  frame number: the CTC file number, else the index from 0), plus
  ``(z_um,) y_um, x_um`` when the pixel size is known and ``time_s`` with
  ``--frame-interval-s``;
- ``DIR/lineage.png`` the lineage tree;
- ``DIR/overlay.gif`` the frames with outlines, ids and trajectories;
- ``DIR/tracker.json`` the tracker settings, to rerun the same tracking;
- ``DIR/track_features.csv`` one row per track: duration, path length,
  displacement, straightness, mean and max speed, in um and s when the pixel
  size (``--pixel-size-um`` or the file's) and ``--frame-interval-s`` are
  known, else in pixels and frames (the column names say which);
- ``DIR/tracks.xml`` with ``--trackmate``: the tracks as a TrackMate XML
  model (frames counted from 0, positions in um when the pixel size is known).

Everything is checked before anything is written: the options (at the
command-line boundary), the output folder (empty or new unless
``--overwrite``, never the input or a folder holding it), the movie's axes,
that a ``--labels`` movie holds labels, and that the segmentation found
objects. Each output is written atomically; if writing fails midway, the
outputs of this run already written are removed, so no mix of runs remains.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import MissingFileError
from cytolens.core.files import atomic_path
from cytolens.core.image import Image
from cytolens.core.options import non_negative, positive
from cytolens.track.steps import NUCLEI_MODEL, movie_of, nuclei_applicability

__all__ = ["NUCLEI_MODEL", "command", "nuclei_applicability"]

logger = logging.getLogger(__name__)


class Segmenter(str, Enum):
    """Per-frame segmentation of a raw movie."""

    threshold = "threshold"
    nuclei = "nuclei"
    auto = "auto"


def _read_movie(path: Path, axes: str | None) -> tuple[Image, str, int]:
    """The movie as an Image ``T(Z)YX``, the name of its result folder, its first frame number."""
    from cytolens import io

    if path.is_dir():
        sequence = io.read_ctc(path)
        first = int(sequence.frames.metadata.get("frame_numbers", [0])[0])
        return sequence.frames, f"{sequence.sequence}_RES", first
    return movie_of(io.imread(path, axes=axes), str(path)), "RES", 0


class _Outputs:
    """The outputs written so far by this run, removed again if a later one fails."""

    def __init__(self) -> None:
        self.written: list[Path] = []

    def write(self, path: Path, how: Callable[[Path], Any]) -> None:
        how(path)
        self.written.append(path)

    def remove(self) -> None:
        for path in self.written:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _write_trackmate(
    path: Path, tracks: Any, sizes: float | dict[str, float] | None, interval: float | None
) -> None:
    """TrackMate XML; per-axis sizes as X's size, the other axes' positions rescaled to match."""
    from cytolens.io.interop import write_trackmate_xml

    if isinstance(sizes, dict):
        size_x = sizes["X"]
        tracks = tracks.assign(
            **{
                f"{ax.lower()}_px": tracks[f"{ax.lower()}_px"] * (s / size_x)
                for ax, s in sizes.items()
            }
        )
        sizes = size_x
    write_trackmate_xml(path, tracks, pixel_size_um=sizes, frame_interval_s=interval)


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
        Segmenter,
        typer.Option(help="Per-frame segmentation: threshold (default), nuclei or auto."),
    ] = Segmenter.threshold,
    max_distance: Annotated[
        float | None,
        typer.Option(
            help="Largest displacement between frames, pixels (default: from the data).",
            callback=positive,
        ),
    ] = None,
    gap_closing: Annotated[
        int,
        typer.Option(help="Most frames an object may be missing (0: off).", callback=non_negative),
    ] = 2,
    divisions: Annotated[bool, typer.Option(help="Detect divisions.")] = True,
    axes: Annotated[
        str | None, typer.Option(help="Axes of a movie file, overriding the file's, e.g. TYX.")
    ] = None,
    fps: Annotated[
        float, typer.Option(help="Frames per second of the overlay GIF.", callback=positive)
    ] = 5.0,
    pixel_size_um: Annotated[
        float | None,
        typer.Option(
            "--pixel-size-um",
            help="Pixel size in um for tracks.csv, track_features.csv and --trackmate "
            "(default: the file's).",
            callback=positive,
        ),
    ] = None,
    frame_interval_s: Annotated[
        float | None,
        typer.Option(
            "--frame-interval-s",
            help="Seconds between frames for tracks.csv (time_s), track_features.csv and "
            "--trackmate (default: times in frames).",
            callback=positive,
        ),
    ] = None,
    trackmate: Annotated[
        bool,
        typer.Option("--trackmate", help="Also write tracks.xml (TrackMate XML, for Fiji)."),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Allow an --out folder that holds an earlier run."),
    ] = False,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Track cells over time: CTC result folder, tracks and track features CSVs, lineage tree
    and overlay GIF (and TrackMate XML with --trackmate)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cytolens.core.axes import check_axes
    from cytolens.core.errors import AxesError
    from cytolens.core.files import prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.pipeline import Item, make_step
    from cytolens.report import save_figure
    from cytolens.track import overlay_animation, plot_lineage
    from cytolens.track.steps import FEATURE_TABLE, TRACK_TABLE

    # the same step and parameters as a pipeline's track step
    step: Any = make_step(
        "track",
        {
            "labels": labels,
            "segmenter": segmenter.value,
            "max_distance": max_distance,
            "gap_closing": gap_closing,
            "divisions": divisions,
            "pixel_size_um": pixel_size_um,
            "frame_interval_s": frame_interval_s,
        },
        where="options",
    )
    if axes is not None:
        try:
            axes = check_axes(axes)
        except AxesError as exc:
            raise AxesError(f"--axes: {exc}") from None
    if not movie_or_folder.exists():
        raise MissingFileError(f"{movie_or_folder}: no such file or folder")
    prepare_output_dir(out, protected=[movie_or_folder], overwrite=overwrite)
    image, res_name, first = _read_movie(movie_or_folder, axes)
    name = str(movie_or_folder)
    frames = image.data
    columns = (TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn())
    outputs = _Outputs()
    with Progress(*columns, transient=True, disable=json_summary) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        item = Item(movie_or_folder, movie_or_folder.name, image)
        tracked = step.track(item, progress=progress)
        trust, used, result = tracked.applicability, tracked.segmenter, tracked.result
        if "warning" in trust:
            typer.echo(trust["warning"], err=True)
        movie_shape = tuple(result.labels.shape)
        empty = tracked.frames_without_objects
        figure = plot_lineage(result.tracks, title=movie_or_folder.name)
        sizes = tracked.pixel_size_um
        table = item.tables[TRACK_TABLE].drop(columns="image")
        features = item.tables[FEATURE_TABLE].drop(columns="image")
        display = (np.asarray(result.labels) > 0).astype(np.uint8) if labels else frames

        def write_csv(path: Path) -> None:
            with atomic_path(path) as tmp:
                table.to_csv(tmp, index=False)

        def write_config(path: Path) -> None:
            with atomic_path(path) as tmp:
                tmp.write_text(result.config.model_dump_json(indent=2) + "\n")

        def write_features(path: Path) -> None:
            with atomic_path(path) as tmp:
                features.to_csv(tmp, index=False)

        n_writes = 7 if trackmate else 6
        progress("writing", 0, n_writes)
        try:
            outputs.write(out / res_name, lambda p: result.to_ctc(p, first_frame=first))
            outputs.write(out / "tracks.csv", write_csv)
            outputs.write(out / "tracker.json", write_config)
            outputs.write(out / "track_features.csv", write_features)
            if trackmate:  # frames from 0: the movie's own frame index, as Fiji opens it
                outputs.write(
                    out / "tracks.xml",
                    lambda p: _write_trackmate(p, result.tracks, sizes, frame_interval_s),
                )
            progress("writing", n_writes - 2, n_writes)
            outputs.write(out / "lineage.png", lambda p: save_figure(figure, p))
            outputs.write(
                out / "overlay.gif",
                lambda p: overlay_animation(display, result.labels, result.tracks, p, fps=fps),
            )
        except BaseException:
            outputs.remove()
            raise
        progress("writing", n_writes, n_writes)
    summary = {
        "input": name,
        "out": str(out),
        "frames": int(movie_shape[0]),
        "first_frame": first,
        "frames_without_objects": len(empty),
        "objects": len(result.tracks),
        "tracks": result.n_tracks,
        "divisions": len(result.divisions),
        "max_distance_px": round(float(result.config.max_distance), 2),
        "pixel_size_um": sizes,
        "frame_interval_s": frame_interval_s,
        "track_features_csv": str(out / "track_features.csv"),
    }
    if trackmate:
        summary["trackmate_xml"] = str(out / "tracks.xml")
    if trust:
        summary.update({"segmenter": used, f"{NUCLEI_MODEL}_applicability": trust})
    if json_summary:
        typer.echo(strict_json(summary))
    else:
        typer.echo(
            f"{summary['tracks']} tracks, {summary['divisions']} divisions over "
            f"{summary['frames']} frames -> {out}"
        )
