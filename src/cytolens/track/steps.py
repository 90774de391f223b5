"""Pipeline step of tracking: ``track`` (a movie, or a label movie, to tracks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from cytolens.core.errors import CytolensError, InputError
from cytolens.core.image import Image
from cytolens.pipeline.step import Item, Step, StepParams

__all__ = ["NUCLEI_MODEL", "TRACK_TABLE", "Track", "Tracked", "movie_of", "nuclei_applicability"]

logger = logging.getLogger(__name__)

#: Name of the per-object table ``track`` leaves in ``item.tables`` (one row per object and frame).
TRACK_TABLE = "tracks"
#: Name of the per-track table (duration, path length, speeds).
FEATURE_TABLE = "track_features"
#: The nucleus model behind segmenter nuclei / auto: cytolens.segment.nuclei's default
#: (``cytolens.segment.model.DEFAULT_MODEL``, not imported: tracking runs without segment).
NUCLEI_MODEL = "nuclei-v2"


class TrackParams(StepParams):
    """Parameters of ``track`` (see :func:`cytolens.track.track`)."""

    labels: bool = Field(False, description="the input is a label movie: track, don't segment")
    segmenter: Literal["threshold", "nuclei", "auto"] = "threshold"
    max_distance: float | None = Field(None, gt=0, description="pixels; default: from the data")
    gap_closing: int = Field(2, ge=0)
    divisions: bool = True
    pixel_size_um: float | None = Field(None, gt=0, description="default: the file's")
    frame_interval_s: float | None = Field(None, gt=0, description="default: times in frames")


def movie_of(image: Image, name: str) -> Image:
    """``image`` as a movie ``TYX`` or ``TZYX`` (a singleton ``C`` dropped).

    Examples
    --------
    >>> movie_of(Image(np.zeros((3, 1, 8, 8)), "TCYX"), "m.tif").axes
    'TYX'
    >>> movie_of(Image(np.zeros((3, 8, 8)), "ZYX"), "m.tif")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: m.tif has axes 'ZYX' (a z-stack) and no time axis; ...
    """
    if "T" not in image.axes:
        example = {3: "TYX", 4: "TZYX"}.get(image.ndim, "TYX")
        kind = " (a z-stack)" if "Z" in image.axes else ""
        raise InputError(
            f"{name} has axes {image.axes!r}{kind} and no time axis; if it really is a "
            f"movie, pass --axes {example}"
        )
    if "C" in image.axes:
        n_c = image.sizes["C"]
        if n_c > 1:
            raise InputError(
                f"{name} has axes {image.axes!r} with {n_c} channels; save the channel to "
                "track as its own movie (expected TYX or TZYX)"
            )
        image = Image(
            image.data.take(0, axis=image.axes.index("C")),
            image.axes.replace("C", ""),
            dict(image.pixel_size_um),
            None,
            image.path,
            dict(image.metadata),
        )
    return image.transpose("TZYX" if "Z" in image.axes else "TYX")


def nuclei_applicability(image: Image, name: str, frames: int = 3) -> dict[str, Any]:
    """Applicability of the nucleus model to a movie: the worst of a few frames (``{}``: none).

    The first, middle and last frames are scored (a projection of each
    z-stack); the row of the frame farthest from the training domain is
    returned, with ``frame``.
    """
    from cytolens.models import load
    from cytolens.models.applicability import score_input

    try:
        segmenter = load(NUCLEI_MODEL, device="cpu")
    except CytolensError as exc:  # the model is not installed: nothing to say
        logger.info("no applicability for %s: %s", name, exc)
        return {}
    data = image.transpose("TZYX" if "Z" in image.axes else "TYX").data
    n_t = data.shape[0]
    worst: dict[str, Any] = {}
    for t in sorted({0, n_t // 2, n_t - 1})[:frames]:
        frame = np.asarray(data[t])
        frame = frame.max(axis=0) if frame.ndim == 3 else frame
        row = score_input(segmenter, frame, f"{name} frame {t}", warn=False)
        if row and (not worst or row["ood_score"] > worst["ood_score"]):
            worst = {**row, "frame": t}
    return worst


def _pixel_sizes(image: Image, given: float | None) -> float | dict[str, float] | None:
    """Pixel size for track features: the option, else the file's (all spatial axes), or None."""
    if given is not None:
        return given
    spatial = [ax for ax in "ZYX" if ax in image.axes]
    sizes = {ax: image.pixel_size_um.get(ax) for ax in spatial}
    return sizes if all(sizes.values()) else None


@dataclass
class Tracked:
    """What :meth:`Track.track` found, beyond the item: for callers that draw or export it."""

    result: Any  #: the :class:`~cytolens.track.TrackingResult` (frames from 0)
    movie: Image  #: the input movie, ``T(Z)YX``
    first: int  #: the input's first frame number (CTC file number, else 0)
    segmenter: str  #: the segmentation used ("labels" for a label movie)
    pixel_size_um: float | dict[str, float] | None
    frames_without_objects: list[int] = field(default_factory=list)
    applicability: dict[str, Any] = field(default_factory=dict)


class Track(Step):
    """Track the objects of a movie (segmented frame by frame) or of a label movie.

    Leaves ``item.labels`` (the movie relabelled by track id, uint32) and the
    ``labels`` output image, the tables ``item.tables["tracks"]`` (one row per
    object and frame: ``image``, ``track_id``, ``frame`` (the input's frame
    number), ``label``, ``(z_px,) y_px, x_px``, ``area_px``,
    ``parent_track_id``, plus ``(z_um,) y_um, x_um`` with a pixel size and
    ``time_s`` with ``frame_interval_s``) and ``item.tables["track_features"]``
    (one row per track), and in the row ``frames``, ``objects``, ``tracks``,
    ``divisions``, ``max_distance_px``, ``frames_without_objects``,
    ``segmenter`` and, for the nucleus model, its applicability
    (``ood_score``, ``in_domain``, ...; ``segmenter: auto`` falls back to the
    threshold out of its domain, and the row's ``warning`` says so).

    Examples
    --------
    >>> from pathlib import Path
    >>> movie = np.zeros((3, 20, 20), np.uint16)
    >>> for t in range(3):
    ...     movie[t, 2 + t : 6 + t, 2:6] = 1
    ...     movie[t, 12:16, 12 + t : 16 + t] = 2
    >>> item = Item(Path("m.tif"), "m", Image(movie, "TYX"))
    >>> Track({"labels": True}).run(item)
    >>> item.row["tracks"], len(item.tables["tracks"]), item.labels.dtype
    (2, 6, dtype('uint32'))
    >>> list(item.tables["tracks"].columns[:6])
    ['image', 'track_id', 'frame', 'label', 'y_px', 'x_px']
    """

    name = "track"
    Params = TrackParams
    gives = ("labels", f"table:{TRACK_TABLE}", f"table:{FEATURE_TABLE}")

    def models(self) -> list[dict[str, str]]:
        from cytolens.pipeline.step import model_provenance

        if self.params.labels or self.params.segmenter == "threshold":
            return []
        return [model_provenance(NUCLEI_MODEL)]

    def run(self, item: Item, *, progress: Any = None) -> None:
        """Track ``item`` (see the class); ``progress(stage, done, total)`` follows the stages."""
        self.track(item, progress=progress)

    def track(self, item: Item, *, progress: Any = None) -> Tracked:
        """:meth:`run`, returning the tracking result and what was decided on the way."""
        from cytolens.core.tables import FRAME, with_physical_units
        from cytolens.core.validate import is_dask
        from cytolens.track import segment_movie, track
        from cytolens.track.config import make_config
        from cytolens.track.features import track_features
        from cytolens.track.segmentation import check_found_objects

        p = self.params
        config = make_config(
            max_distance=p.max_distance, gap_closing=p.gap_closing, divisions=p.divisions
        )
        name = str(item.source)
        image = movie_of(item.image, name)
        first = int(image.metadata.get("frame_numbers", [0])[0])
        trust: dict[str, Any] = {}
        used = "labels" if p.labels else p.segmenter
        if not p.labels and p.segmenter != "threshold":
            trust = nuclei_applicability(image, name)
            if trust.get("in_domain") is False:
                note = (
                    f"warning: {name} lies outside the training domain of {NUCLEI_MODEL} "
                    f"(ood_score {trust['ood_score']:.2f} > 1; not images of fluorescent nuclei "
                    "like its training images)"
                )
                if p.segmenter == "auto":  # auto does not pick a model out of its domain
                    used = "threshold"
                    note += "; --segmenter auto uses the threshold baseline instead"
                trust["warning"] = note + "; check the overlay"
        if p.labels:
            movie: Any = image  # checked by track(): integer labels, not intensities
        else:
            movie = segment_movie(image, segmenter=used, progress=progress)
            check_found_objects(movie, used, name, option="--segmenter ")
        result = track(movie, config=config, progress=progress)
        if result.tracks.empty:  # a label movie of zeros (an empty segmentation was refused)
            raise InputError(f"{name} holds no objects: every frame is 0; nothing to track")
        n_t = int(result.labels.shape[0])
        empty = [t for t in range(n_t) if not (result.tracks[FRAME] == t).any()]
        if empty:
            logger.warning(
                "%s: no objects in %d of %d frame(s) (first: frame %d)",
                name,
                len(empty),
                n_t,
                first + empty[0],
            )
        sizes = _pixel_sizes(image, p.pixel_size_um)
        table = result.tracks.assign(**{FRAME: result.tracks[FRAME] + first})
        features = track_features(table, pixel_size_um=sizes, frame_interval_s=p.frame_interval_s)
        table = with_physical_units(table, pixel_size_um=sizes, frame_interval_s=p.frame_interval_s)
        item.tables[TRACK_TABLE] = table.assign(image=item.name)[["image", *table.columns]]
        item.tables[FEATURE_TABLE] = features.assign(image=item.name)[["image", *features.columns]]
        labels = result.labels  # a Dask movie stays lazy
        item.labels = labels.astype(np.uint32) if is_dask(labels) else np.asarray(labels, np.uint32)
        spatial = {a: s for a, s in image.pixel_size_um.items() if a in image.axes}
        item.images["labels"] = Image(item.labels, image.axes, spatial)
        item.row.update(
            frames=n_t,
            first_frame=first,
            frames_without_objects=len(empty),
            objects=len(result.tracks),
            tracks=result.n_tracks,
            divisions=len(result.divisions),
            max_distance_px=round(float(result.config.max_distance), 2),
            segmenter=used,
        )
        item.row.update({k: v for k, v in trust.items() if k != "frame"})
        return Tracked(result, image, first, used, sizes, empty, trust)
