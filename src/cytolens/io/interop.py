"""Results in the formats of the tools users already have: Fiji/ImageJ, QuPath, TrackMate.

- :func:`write_imagej_rois`: one polygon ROI per labelled object (outline), or
  one rectangle per detection box, as an ImageJ ROI set ``.zip`` (``roifile``),
  opened by Fiji's ROI Manager.
- :func:`write_geojson`: a GeoJSON ``FeatureCollection`` with one feature per
  object or box, in pixel coordinates, as QuPath imports it
  (``objectType`` ``"detection"``, a ``classification`` name).
- :func:`write_trackmate_xml` / :func:`read_trackmate_xml`: tracks as a
  TrackMate model (spots per frame, link edges, one TrackMate track per
  lineage), in um and seconds when known.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import FileFormatError, InputError
from cytolens.core.files import atomic_path
from cytolens.core.tables import BOX_COLUMNS, FRAME, position_columns

__all__ = [
    "label_outlines",
    "read_trackmate_xml",
    "write_geojson",
    "write_imagej_rois",
    "write_trackmate_xml",
]


def label_outlines(labels: Any) -> dict[int, np.ndarray]:
    """The outer outline of every object of a 2-D label image, as ``(N, 2)`` ``x, y`` vertices.

    Vertices lie on pixel corners (the boundary between the object's pixels
    and the rest), traced with :func:`skimage.measure.find_contours` at 0.5 on
    the object's mask upsampled so the contour follows pixel edges; objects
    in several pieces give the outline of their largest piece.

    Examples
    --------
    >>> labels = np.zeros((6, 6), np.uint8); labels[1:3, 2:5] = 4
    >>> xy = label_outlines(labels)[4]
    >>> xy.min(axis=0).tolist(), xy.max(axis=0).tolist()  # x 2..5, y 1..3: pixel corners
    ([2.0, 1.0], [5.0, 3.0])
    """
    from skimage.measure import find_contours, regionprops

    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise InputError(f"outlines need a 2-D label image (YX), got shape {arr.shape}")
    out = {}
    for region in regionprops(arr.astype(np.int64)):
        y0, x0 = region.bbox[:2]
        mask = np.pad(region.image, 1)
        fine = np.kron(mask, np.ones((2, 2), np.uint8))  # pixel corners become grid points
        contours = find_contours(fine.astype(float), 0.5)
        contour = max(contours, key=len)
        yx = np.round((contour + 0.5) / 2) - 1 + (y0, x0)
        keep = np.r_[True, np.any(np.diff(yx, axis=0) != 0, axis=1)]
        yx = yx[keep]
        if len(yx) > 1 and np.all(yx[0] == yx[-1]):
            yx = yx[:-1]
        out[int(region.label)] = np.ascontiguousarray(yx[:, ::-1], np.float64)
    return out


def _check_boxes(boxes: pd.DataFrame) -> None:
    missing = set(BOX_COLUMNS) - set(boxes.columns)
    if missing:
        raise InputError(f"boxes need columns {BOX_COLUMNS}; missing {sorted(missing)}")


def write_imagej_rois(
    path: str | os.PathLike[str],
    *,
    labels: Any = None,
    boxes: pd.DataFrame | None = None,
    empty_ok: bool = False,
) -> Path:
    """Write an ImageJ ROI set (``.zip``) for a label image or a table of boxes.

    Parameters
    ----------
    path : str or path-like
        The ``.zip`` to write (atomically).
    labels : array_like, optional
        2-D label image: one polygon ROI per object, named ``label-<k>``.
    boxes : pandas.DataFrame, optional
        ``xmin_px, ymin_px, xmax_px, ymax_px`` (max exclusive) and optionally
        ``class``: one rectangle ROI per row, named ``<class>-<row>``.
    empty_ok : bool
        Write an empty set (a zip with no ROI) when there is no object,
        instead of raising.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, roifile
    >>> labels = np.zeros((16, 16), np.uint8); labels[2:6, 3:9] = 1; labels[9:14, 9:12] = 2
    >>> out = write_imagej_rois(Path(tempfile.mkdtemp()) / "rois.zip", labels=labels)
    >>> [roi.name for roi in roifile.roiread(out)]
    ['label-1', 'label-2']
    """
    from roifile import ROI_TYPE, ImagejRoi, roiwrite

    if (labels is None) == (boxes is None):
        raise InputError("write_imagej_rois needs labels or boxes (one of them)")
    rois = []
    if labels is not None:
        for label, xy in label_outlines(labels).items():
            rois.append(ImagejRoi.frompoints(xy, name=f"label-{label}"))
    else:
        _check_boxes(boxes)
        # records, not itertuples: "class" is a Python keyword, so itertuples renames it
        for k, row in enumerate(boxes.to_dict("records")):
            roi = ImagejRoi(
                roitype=ROI_TYPE.RECT,
                top=int(row["ymin_px"]),
                left=int(row["xmin_px"]),
                bottom=int(row["ymax_px"]),
                right=int(row["xmax_px"]),
                name=f"{row.get('class', 'box')}-{k + 1}",
            )
            rois.append(roi)
    if not rois and not empty_ok:
        raise InputError(f"{path}: no object to write (the labels or boxes are empty)")
    path = Path(path)
    with atomic_path(path) as tmp:
        if rois:
            roiwrite(tmp, rois, mode="w")
        else:
            import zipfile

            zipfile.ZipFile(tmp, "w").close()
    return path


def _feature(ring: list[list[float]], name: str, properties: dict[str, Any]) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "detection",
            "classification": {"name": name},
            **properties,
        },
    }


def write_geojson(
    path: str | os.PathLike[str],
    *,
    labels: Any = None,
    boxes: pd.DataFrame | None = None,
    class_name: str = "nucleus",
) -> Path:
    """Write a GeoJSON FeatureCollection (QuPath) with one polygon feature per object or box.

    Coordinates are ``x, y`` in pixels of the image (QuPath's convention);
    rings are closed. Properties: ``objectType`` (``"detection"``),
    ``classification`` (``{"name": class_name}`` or the box's ``class``),
    ``label`` (object id) or ``score`` (boxes, when present).

    Examples
    --------
    >>> import tempfile
    >>> labels = np.zeros((16, 16), np.uint8); labels[2:6, 3:9] = 1
    >>> out = write_geojson(Path(tempfile.mkdtemp()) / "cells.geojson", labels=labels)
    >>> doc = json.loads(out.read_text())
    >>> doc["type"], len(doc["features"]), doc["features"][0]["properties"]["label"]
    ('FeatureCollection', 1, 1)
    """
    if (labels is None) == (boxes is None):
        raise InputError("write_geojson needs labels or boxes (one of them)")
    features = []
    if labels is not None:
        for label, xy in label_outlines(labels).items():
            ring = [*xy.tolist(), xy[0].tolist()]
            features.append(_feature(ring, class_name, {"label": label}))
    else:
        _check_boxes(boxes)
        for row in boxes.to_dict("records"):
            x0, y0, x1, y1 = (float(row[c]) for c in BOX_COLUMNS)
            ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            props = {"score": float(row["score"])} if "score" in row else {}
            features.append(_feature(ring, str(row.get("class", class_name)), props))
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def write_trackmate_xml(
    path: str | os.PathLike[str],
    tracks: pd.DataFrame,
    *,
    pixel_size_um: float | None = None,
    frame_interval_s: float | None = None,
) -> Path:
    """Write tracks as a TrackMate XML model (``<TrackMate><Model>``), readable by TrackMate.

    Parameters
    ----------
    tracks : pandas.DataFrame
        As :func:`cytolens.track.track` returns: ``track_id``, ``frame``,
        ``(z_px,) y_px, x_px``, ``parent_track_id`` (0 = none), optionally
        ``area_px``.
    pixel_size_um, frame_interval_s : float, optional
        Positions in um and times in s; in pixels and frames without them.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> t = pd.DataFrame({"track_id": 1, "frame": [0, 1], "y_px": 2.0, "x_px": [1.0, 3.0]})
    >>> out = write_trackmate_xml(Path(tempfile.mkdtemp()) / "t.xml", t, pixel_size_um=0.5)
    >>> read_trackmate_xml(out)[["track_id", "frame", "x_um"]].to_numpy().tolist()
    [[1.0, 0.0, 0.5], [1.0, 1.0, 1.5]]
    """
    need = {"track_id", FRAME, "y_px", "x_px"}
    if not need <= set(tracks.columns):
        raise InputError(f"tracks need columns {sorted(need)}; got {list(tracks.columns)}")
    px = float(pixel_size_um) if pixel_size_um is not None else 1.0
    dt = float(frame_interval_s) if frame_interval_s is not None else 1.0
    table = tracks.sort_values(["track_id", FRAME]).reset_index(drop=True)
    table["spot_id"] = np.arange(len(table))
    parents = (
        table.groupby("track_id")["parent_track_id"].first()
        if ("parent_track_id" in table.columns)
        else pd.Series(0, index=table["track_id"].unique())
    )
    # lineage root of every cytolens track: one TrackMate track per lineage
    root = {}
    for tid in parents.index:
        r, seen = int(tid), set()
        while int(parents.get(r, 0)) > 0 and r not in seen:
            seen.add(r)
            r = int(parents[r])
        root[int(tid)] = r
    trackmate = ET.Element("TrackMate", version="7.0.0")
    model = ET.SubElement(
        trackmate,
        "Model",
        spatialunits="micron" if pixel_size_um is not None else "pixel",
        timeunits="sec" if frame_interval_s is not None else "frame",
    )
    all_spots = ET.SubElement(model, "AllSpots", nspots=str(len(table)))
    spatial = position_columns(table)
    for frame, group in table.groupby(FRAME, sort=True):
        in_frame = ET.SubElement(all_spots, "SpotsInFrame", frame=str(int(frame)))
        for row in group.to_dict("records"):
            radius = np.sqrt(row.get("area_px", np.pi) / np.pi) * px
            z = float(row["z_px"]) * px if "z_px" in spatial else 0.0
            ET.SubElement(
                in_frame,
                "Spot",
                ID=str(row["spot_id"]),
                name=f"ID{row['spot_id']}",
                POSITION_X=repr(float(row["x_px"]) * px),
                POSITION_Y=repr(float(row["y_px"]) * px),
                POSITION_Z=repr(z),
                FRAME=str(int(frame)),
                POSITION_T=repr(float(frame) * dt),
                RADIUS=repr(float(radius)),
                QUALITY="1.0",
                VISIBILITY="1",
                TRACK_ID_CYTOLENS=str(int(row["track_id"])),
            )
    first = table.groupby("track_id")["spot_id"].first()
    last = table.groupby("track_id")["spot_id"].last()
    edges: dict[int, list[tuple[int, int]]] = {}
    for tid, group in table.groupby("track_id"):
        ids = group["spot_id"].to_numpy()
        pairs = list(zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True))
        parent = int(parents.get(tid, 0))
        if parent > 0 and parent in last.index:
            pairs.insert(0, (int(last[parent]), int(first[tid])))
        edges.setdefault(root[int(tid)], []).extend(pairs)
    all_tracks = ET.SubElement(model, "AllTracks")
    filtered = ET.SubElement(model, "FilteredTracks")
    for n, (lineage, pairs) in enumerate(sorted(edges.items())):
        track = ET.SubElement(all_tracks, "Track", name=f"Track_{lineage}", TRACK_ID=str(n))
        for source, target in pairs:
            ET.SubElement(track, "Edge", SPOT_SOURCE_ID=str(source), SPOT_TARGET_ID=str(target))
        ET.SubElement(filtered, "TrackID", TRACK_ID=str(n))
    path = Path(path)
    with atomic_path(path) as tmp:
        ET.ElementTree(trackmate).write(tmp, encoding="UTF-8", xml_declaration=True)
    return path


def read_trackmate_xml(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the spots and links of a TrackMate XML model as a tracks table.

    Segments between divisions (and merges) become tracks as in cytolens
    (``track_id``, ``frame``, ``(z_<U>,) y_<U>, x_<U>``, ``parent_track_id``),
    positions in the file's units: ``_um`` for a model in microns, ``_px``
    in pixels (another unit names itself, e.g. ``_nm``),
    numbered as cytolens wrote them (spot attribute ``TRACK_ID_CYTOLENS``, which
    also splits closed gaps) or else in the order of their first spot.

    Returns
    -------
    pandas.DataFrame
    """
    try:
        model = ET.parse(path).getroot().find("Model")
    except (OSError, ET.ParseError) as exc:
        raise FileFormatError(f"{path}: not a readable TrackMate XML file ({exc})") from exc
    if model is None:
        raise FileFormatError(f"{path}: no <Model> element (not a TrackMate XML file)")
    cytolens_id = {
        int(s.get("ID")): int(s.get("TRACK_ID_CYTOLENS"))
        for s in model.iter("Spot")
        if s.get("TRACK_ID_CYTOLENS") is not None
    }
    spots = {
        int(s.get("ID")): (
            int(s.get("FRAME")),
            float(s.get("POSITION_Z", 0)),
            float(s.get("POSITION_Y")),
            float(s.get("POSITION_X")),
        )
        for s in model.iter("Spot")
    }
    children: dict[int, list[int]] = {}
    parents: dict[int, list[int]] = {}
    for edge in model.iter("Edge"):
        a, b = int(edge.get("SPOT_SOURCE_ID")), int(edge.get("SPOT_TARGET_ID"))
        if spots[a][0] > spots[b][0]:
            a, b = b, a
        children.setdefault(a, []).append(b)
        parents.setdefault(b, []).append(a)

    def continues(spot: int) -> bool:
        """The spot continues its single parent's segment (no division or merge between)."""
        up = parents.get(spot, [])
        same = len(up) == 1 and cytolens_id.get(spot) == cytolens_id.get(up[0])
        return same and len(children[up[0]]) == 1

    rows, track_of = [], {}
    starts = sorted((s for s in spots if not continues(s)), key=lambda s: (spots[s][0], s))
    for k, start in enumerate(starts, 1):
        tid, spot = cytolens_id.get(start, k), start
        while True:
            track_of[spot] = tid
            rows.append((tid, *spots[spot]))
            nxt = children.get(spot, [])
            if len(nxt) != 1 or not continues(nxt[0]):
                break
            spot = nxt[0]
    parent_track = {
        track_of[spot]: track_of[up[0]]
        for spot, up in parents.items()
        if not continues(spot) and len(up) == 1
    }
    unit = _spatial_unit(model.get("spatialunits"))
    z, y, x = (f"{ax}_{unit}" for ax in "zyx")
    table = pd.DataFrame(rows, columns=["track_id", FRAME, z, y, x])
    if not (table[z] != 0).any():
        table = table.drop(columns=z)
    table["parent_track_id"] = table["track_id"].map(parent_track).fillna(0).astype(int)
    return table.sort_values(["track_id", FRAME]).reset_index(drop=True)


def _spatial_unit(name: str | None) -> str:
    """Column suffix for a TrackMate ``spatialunits``: ``um``, ``px`` or the unit itself.

    Examples
    --------
    >>> _spatial_unit("micron"), _spatial_unit("pixel"), _spatial_unit("nm")
    ('um', 'px', 'nm')
    """
    unit = (name or "pixel").strip().lower()
    if unit in ("micron", "microns", "um", "\u00b5m", "\u03bcm", "micrometer", "micrometre"):
        return "um"
    if unit in ("pixel", "pixels", "px", ""):
        return "px"
    return "".join(c for c in unit if c.isalnum()) or "px"
