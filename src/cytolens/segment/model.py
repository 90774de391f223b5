"""The learned nucleus segmenter: :class:`NucleusSegmenter` and :func:`nuclei`.

Pipeline for one image:

1. one normalized plane with bright nuclei (:mod:`cytolens.segment.preprocess`);
2. the typical nucleus diameter: given by the user, or estimated (below);
3. the plane is rescaled so nuclei have the diameter the network was trained
   at (``parameters.diameter_px`` of the model card, 16 px for ``nuclei-v1``);
4. the U-Net predicts foreground and normalized-distance maps tile by tile
   (:func:`cytolens.core.tiling.apply_tiled`, overlap + linear blending), so
   any image size runs in bounded memory; the network runs as a copy with
   batch norm folded, channels-last, in bfloat16 where the CPU has it
   (:meth:`NucleusSegmenter.inference_network`);
5. the stitched maps are resized back to the input's pixel grid and split
   into nuclei by a marker-controlled watershed
   (:func:`~cytolens.segment.representation.instances_from_maps`), on the
   whole image at once, so nuclei crossing tile borders are never cut.

Size estimation when no ``diameter`` is given
(:meth:`NucleusSegmenter.estimate_diameter`): a first guess from the
classical threshold (:func:`~cytolens.segment.classical.estimate_diameter`),
then the network probes one window of at most 384 x 384 px (at its scale) and
the median diameter of the nuclei it finds there is the next guess, until the
two agree within 25 % (at most 3 probes). The probes cost a bounded amount
whatever the image size; an image up to 512 px and 2 x 384^2 px at the
network's scale is probed whole (still measured in the window), so its last
probe's maps and labels are the result. The network was trained on nuclei zoomed by up to 1.4x
either way, so a guess within 25 % is good enough. The estimate is reliable
for fluorescence (within 25 % of the true median diameter on 94 % of the
35 DSB2018 fluorescence tune images, against 91 % for the classical guess
alone) and less so for brightfield and H&E images, where
giving ``diameter`` is better. With a stain-aware model (``nuclei-v2``,
card ``parameters.stain: auto``) the first guess on brightfield images is
taken from the nuclei only
(:func:`~cytolens.segment.preprocess.nuclear_plane`), not from whole cells:
held-out brightfield AP@0.5 0.003 -> 0.51.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np

from cytolens.core.errors import InputError, ModelError
from cytolens.models.predictor import Predictor
from cytolens.segment.classical import checked_diameter_px, estimate_diameter
from cytolens.segment.preprocess import (
    check_diameter,
    image_name,
    nuclear_plane,
    prepared_plane,
)
from cytolens.segment.representation import instances_from_maps

__all__ = ["DEFAULT_MODEL", "NucleusSegmenter", "nuclei", "rescale_plane"]

logger = logging.getLogger(__name__)

#: The default nucleus model (nuclei-v1 stays shipped: load it by name).
DEFAULT_MODEL = "nuclei-v2"
#: Side (px, at the network's scale) and most windows of the applicability features.
FEATURE_WINDOW = 128
FEATURE_WINDOWS = 4
#: A size guess is accepted when the network finds nuclei within this factor of it.
REFINE_FACTOR = 1.25
#: Side (px at the network's scale) of the window the network probes to measure nucleus size.
PROBE_SIZE = 384
#: Planes up to this side and area (px at the network's scale) are probed whole.
PROBE_WHOLE_SIDE = 512
PROBE_WHOLE_AREA = 2 * PROBE_SIZE**2


def rescale_plane(x: np.ndarray, scale: float, *, order: int = 1) -> np.ndarray:
    """Zoom a 2-D float plane by ``scale`` (anti-aliased when shrinking), as float32.

    Examples
    --------
    >>> rescale_plane(np.ones((10, 20), np.float32), 0.5).shape
    (5, 10)
    """
    if abs(scale - 1) < 1e-3:
        return np.asarray(x, np.float32)
    from skimage.transform import rescale

    return rescale(
        x, scale, order=order, anti_aliasing=scale < 1 and order > 0, preserve_range=True
    ).astype(np.float32)


def _resize_maps(maps: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if maps.shape[1:] == tuple(shape):
        return maps
    from skimage.transform import resize

    return np.stack([resize(m, shape, order=1, preserve_range=True) for m in maps]).astype(
        np.float32
    )


def _median_diameter(labels: np.ndarray) -> float | None:
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    return float(np.sqrt(4 * np.median(sizes) / np.pi)) if sizes.size else None


class NucleusSegmenter(Predictor):
    """A shipped nucleus model ready to segment images.

    Parameters
    ----------
    network : torch.nn.Module
        The U-Net (:class:`cytolens.segment.network.UNet`), weights loaded.
    card : cytolens.models.ModelCard
        Its model card; ``parameters`` (:class:`~cytolens.models.schema.SegmentParameters`)
        holds ``diameter_px``, ``fg_threshold``, ``seed_threshold``,
        ``min_size_px`` and ``tile_overlap``; ``normalization`` the percentile
        normalization of the input plane.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Examples
    --------
    >>> seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
    >>> seg.diameter
    16.0
    >>> yy, xx = np.mgrid[:96, :96]
    >>> img = 100 + 900 * (((yy - 48) ** 2 + (xx - 40) ** 2) < 10**2)
    >>> int(seg.segment(img, diameter=20).max())
    1
    """

    capability = "segment"
    #: Arithmetic of the network: "auto" (bfloat16 inner layers on CPUs with native
    #: bfloat16, else float32), "float32" or "bfloat16" (:meth:`inference_network`).
    precision = "auto"

    def configure(self) -> None:
        """Read the card's segmentation parameters; the normalization must be a percentile one."""
        from cytolens.models.schema import PercentileNormalization

        p = self.params
        self.diameter = float(p.diameter_px)
        self.fg_threshold = float(p.fg_threshold)
        self.seed_threshold = float(p.seed_threshold)
        self.min_size_px = float(p.min_size_px)
        self.overlap = int(p.tile_overlap)
        self.stain = str(p.stain)
        if not isinstance(self.normalization, PercentileNormalization) or (
            self.normalization.per_channel
        ):
            raise ModelError(
                f"model card of {self.name!r}: a nucleus model needs a whole-image percentile "
                f"normalization, got {self.normalization!r}"
            )

    @classmethod
    def from_pretrained(
        cls, name: str = DEFAULT_MODEL, *, device: Any = "auto", root: Any = None
    ) -> NucleusSegmenter:
        """Load a shipped model by name or folder (:func:`cytolens.models.load`, one cache).

        Examples
        --------
        >>> NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu").overlap
        48
        """
        from cytolens.models import load

        return load(name, device=device, root=root, capability="segment")

    def _predict_tile(self, tile: np.ndarray, *, network: Any = None) -> np.ndarray:
        """Maps ``(2, Y, X)`` of one tile; ``network`` defaults to :meth:`inference_network`."""
        import torch

        div = self.network.divisor
        h, w = tile.shape
        pad = ((0, -h % div), (0, -w % div))
        x = torch.from_numpy(np.pad(tile, pad, mode="symmetric")[None, None]).to(self.device)
        from cytolens.segment.inference import resolve_precision

        bf16 = False
        if network is None:
            network = self.inference_network()
            bf16 = resolve_precision(self.precision, self.device) == "bfloat16"
        if next(network.parameters()).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        half = torch.autocast(x.device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), half:
            y = torch.sigmoid(network(x).float())[0, :, :h, :w]
        return y.cpu().numpy()

    def inference_network(self, precision: str | None = None) -> Any:
        """The network prepared for prediction (:func:`cytolens.segment.inference.inference_copy`).

        Batch norm folded, channels-last, and in ``precision`` (default
        :attr:`precision`): ``"auto"`` runs the inner layers in bfloat16 on
        CPUs with native bfloat16 instructions, ``"float32"`` gives the maps of
        :attr:`network` up to float rounding (about 1e-6). Made once per
        precision, and again when the weights change.
        """
        from cytolens.segment.inference import inference_copy, resolve_precision

        precision = resolve_precision(precision or self.precision, self.device)
        version = sum(p._version for p in self.network.parameters())
        cache = self.__dict__.setdefault("_inference", {})
        if cache.get(precision, (None,))[0] != version:
            cache[precision] = (version, inference_copy(self.network, precision=precision))
        return cache[precision][1]

    def predict_maps(
        self,
        normalized: np.ndarray,
        *,
        scale: float = 1.0,
        tile_shape: Any = 512,
        progress: Any = False,
    ) -> np.ndarray:
        """Foreground and distance maps, ``(2, Y, X)`` float32 in ``[0, 1]``, on the input grid.

        Parameters
        ----------
        normalized : numpy.ndarray
            A normalized plane with bright nuclei
            (:func:`~cytolens.segment.preprocess.normalized_plane`).
        scale : float
            Zoom applied before the network (training diameter / nucleus diameter).
        tile_shape : int or (int, int)
            Tile size at the network's scale (halo included).
        progress : bool or callable
            Progress of the tiles (see :func:`~cytolens.core.tiling.apply_tiled`).
        """
        from cytolens.core.tiling import apply_tiled

        if not (math.isfinite(scale) and scale > 0):
            raise InputError(f"scale must be a positive number, got {scale!r}")
        xs = rescale_plane(normalized, scale)
        maps = apply_tiled(
            self._predict_tile,
            xs,
            tile_shape=tile_shape,
            overlap=self.overlap,
            blend="linear",
            dtype=np.float32,
            progress=progress,
        )
        return _resize_maps(maps, normalized.shape)

    def instances(self, maps: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Label image from maps predicted at ``scale`` (see :meth:`predict_maps`)."""
        return instances_from_maps(
            maps[0],
            maps[1],
            fg_threshold=self.fg_threshold,
            seed_threshold=self.seed_threshold,
            min_size=round(self.min_size_px / scale**2),
        )

    def segment(
        self,
        image: Any,
        *,
        diameter: float | None = None,
        pixel_size_um: Any = None,
        axes: str | None = None,
        channel: int | None = None,
        invert: bool | None = None,
        tile_shape: Any = 512,
        progress: Any = False,
        stain: str | None = None,
        chunk_shape: Any = None,
    ) -> np.ndarray:
        """Segment nuclei in a 2-D image; see :func:`nuclei` for the parameters."""
        from cytolens.segment.chunked import segment_chunked, use_chunked

        if use_chunked(image, axes=axes, chunk_shape=chunk_shape):  # large or lazy: bounded memory
            return segment_chunked(
                self, image, diameter=diameter, pixel_size_um=pixel_size_um, axes=axes,
                channel=channel, invert=invert, tile_shape=tile_shape, stain=stain,
                chunk_shape=chunk_shape, progress=progress,
            ).labels  # fmt: skip
        name = image_name(image)
        self.check_tile_shape(tile_shape)
        x, info = self.prepare(image, axes=axes, channel=channel, invert=invert, stain=stain)
        d = checked_diameter_px(diameter, pixel_size_um, x.shape, name, zoom_to=self.diameter)
        maps = labels = None
        if d is None:
            estimate, probe = self.estimate_diameter(x, stain=info["stain"])
            d = check_diameter(estimate, x.shape, name, estimated=True)
            if (  # the probe saw the whole image in one tile, as predict_maps would: reuse it
                probe is not None
                and probe[0] == d
                and _fits_one_tile(x.shape, self.diameter / d, tile_shape, math.inf)
            ):
                maps, labels = probe[1:]
        scale = self.diameter / d
        if maps is None:
            maps = self.predict_maps(x, scale=scale, tile_shape=tile_shape, progress=progress)
        if labels is None:
            labels = self.instances(maps, scale=scale)
        if not info["inverted"] and info["stain"] in ("fluorescence", "mean"):
            from cytolens.segment.dim import add_dim_nuclei  # nuclei far dimmer than the rest

            labels = add_dim_nuclei(self, x, labels, diameter=d, tile_shape=tile_shape)
        logger.info(
            "segmented %d nuclei (diameter %.1f px%s, stain %s, inverted=%s)",
            int(labels.max()),
            d,
            "" if diameter is not None else ", estimated",
            info["stain"],
            info["inverted"],
        )
        return labels

    def features(
        self,
        image: Any,
        *,
        diameter: float | None = None,
        axes: str | None = None,
        channel: int | None = None,
        invert: bool | None = None,
        max_windows: int = FEATURE_WINDOWS,
    ) -> np.ndarray:
        """Applicability features of one image: pooled activations of the U-Net.

        The image is prepared as :meth:`segment` prepares it (one plane,
        normalized, bright nuclei, rescaled so nuclei are ``diameter_px``
        wide; the diameter, when not given in pixels, is the quick classical
        estimate) and at most ``max_windows`` windows of
        :data:`FEATURE_WINDOW` px at the network's scale go through the
        network; the per-channel mean and standard deviation of its first
        encoder block, its last-but-one decoder block and its output maps,
        averaged over the windows, are the features.

        Returns
        -------
        numpy.ndarray of float64, shape (d,)

        Examples
        --------
        >>> seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
        >>> seg.features(np.random.default_rng(0).random((64, 64))).shape
        (100,)
        """
        from cytolens.models.applicability import PooledFeatures, sample_windows

        x, info = self.prepare(image, axes=axes, channel=channel, invert=invert)
        d = diameter or estimate_diameter(nuclear_plane(x, info["stain"])) or self.diameter
        d = float(np.clip(d, 3.0, max(3.0, min(x.shape))))
        xs = rescale_plane(x, self.diameter / d)
        # the first encoder block, the last-but-one decoder block and the output maps:
        # chosen on held-out images, they separate other sets far better than the
        # bottleneck (ROC AUC 0.96 vs 0.88, benchmarks/trust.py)
        decoder = f"merge.{max(0, len(self.network.merge) - 2)}"
        # the float32 copy (batch norm folded): the features of :attr:`network` within 1e-6
        network = self.inference_network("float32")
        with PooledFeatures(network, ["down.0", decoder, "head"]) as pooled:
            for window in sample_windows(xs.shape, FEATURE_WINDOW, max_windows):
                self._predict_tile(np.ascontiguousarray(xs[window]), network=network)
        return pooled.take().mean(0)

    def prepare(
        self,
        image: Any,
        *,
        axes: str | None = None,
        channel: int | None = None,
        invert: bool | None = None,
        stain: str | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The normalized plane with bright nuclei the network sees, and how it was made.

        :func:`~cytolens.segment.preprocess.prepared_plane` with the card's
        ``stain`` (``"mean"`` for nuclei-v1, ``"auto"`` for nuclei-v2) unless
        ``stain`` is given.

        Returns
        -------
        normalized : numpy.ndarray of float32, shape (Y, X)
        info : dict
            ``stain`` (the one used: fluorescence, brightfield, he or mean) and ``inverted``.

        Examples
        --------
        >>> seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
        >>> seg.prepare(np.zeros((32, 32)))[1]
        {'stain': 'mean', 'inverted': False}
        """
        return prepared_plane(
            image,
            axes=axes,
            channel=channel,
            stain=self.stain if stain is None else stain,
            invert=invert,
            normalizer=self.normalization,
        )

    def check_tile_shape(self, tile_shape: Any, option: str = "tile_shape") -> None:
        """Refuse tiles too small for the model's overlap (``2 * overlap + 1`` px at least).

        Parameters
        ----------
        tile_shape : int, (int, int) or None
            As given to :meth:`segment`; ``None`` means whole-image tiles.
        option : str
            How the user named it, for messages (``--tile-shape``).

        Raises
        ------
        InputError
        """
        sides = tile_shape if isinstance(tile_shape, (tuple, list)) else (tile_shape,)
        for side in sides:
            if side is None or side == -1:
                continue
            if isinstance(side, bool) or not isinstance(side, (int, np.integer)):
                raise InputError(f"{option} must be whole pixels, got {tile_shape!r}")
            if side <= 2 * self.overlap:
                raise InputError(
                    f"{option} {side} is too small for model {self.card.name!r}: its tiles "
                    f"overlap by {self.overlap} px on each side; give at least "
                    f"{2 * self.overlap + 1} (default 512)"
                )

    def estimate_diameter(
        self, normalized: np.ndarray, *, max_probes: int = 3, stain: str | None = None
    ) -> tuple[float, tuple[float, np.ndarray, np.ndarray] | None]:
        """Typical nucleus diameter (px) of a normalized plane, from probes of the network.

        The first guess comes from :func:`~cytolens.segment.classical.estimate_diameter`
        (the training diameter if it finds nothing) on the plane's
        :func:`~cytolens.segment.preprocess.nuclear_plane` for ``stain``
        (brightfield: nuclei, not whole cells). The network then runs on
        one window of at most :data:`PROBE_SIZE` px (at its own scale; the
        brightest window, where nuclei are; the whole plane when it is at most
        :data:`PROBE_WHOLE_SIDE` px wide and :data:`PROBE_WHOLE_AREA` px in
        area at that scale, measured in the same window), and the median
        equivalent diameter of the whole nuclei it finds there becomes the next guess,
        until it agrees with the guess within 25 % (at most ``max_probes``
        runs; each guess moves at most 4x).

        Returns
        -------
        diameter : float
            In pixels of ``normalized``.
        probe : (float, numpy.ndarray, numpy.ndarray) or None
            When the last probe covered the whole image: the diameter it ran at,
            its maps and its labels, which :meth:`segment` reuses.
        """
        d = estimate_diameter(nuclear_plane(normalized, stain)) or self.diameter
        last = None
        for _ in range(max_probes):
            measured, last = self._probe(normalized, d)
            if measured is None:
                break
            ratio = measured / d
            if abs(math.log(ratio)) < math.log(REFINE_FACTOR):
                break
            logger.info("nucleus diameter: guess %.1f px, the network finds %.1f px", d, measured)
            d *= min(max(ratio, 0.25), 4.0)
        return d, last

    def _probe(
        self, normalized: np.ndarray, d: float
    ) -> tuple[float | None, tuple[float, np.ndarray, np.ndarray] | None]:
        """Median diameter of the nuclei found in one window at diameter ``d``."""
        scale = self.diameter / d
        side = max(16, round(PROBE_SIZE / scale))  # the window, in input pixels
        y0, x0 = _brightest_window(normalized, side)
        window = (slice(y0, y0 + side), slice(x0, x0 + side))
        # an image a little larger than the window is probed whole (and measured in the
        # window): the same cost as the window, and segment() then reuses the maps
        whole = _fits_one_tile(normalized.shape, scale, PROBE_WHOLE_SIDE, PROBE_WHOLE_AREA)
        maps = self.predict_maps(normalized if whole else normalized[window], scale=scale,
                                 tile_shape=None)  # fmt: skip
        labels = found = self.instances(maps, scale=scale)
        if normalized[window].shape != normalized.shape:
            # nuclei cut by the window's edge would bias the size down
            labels = labels[window] if whole else labels
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            labels = np.where(np.isin(labels, edge[edge > 0]), 0, labels)
        return _median_diameter(labels), ((d, maps, found) if whole else None)


def network_shape(shape: tuple[int, ...], scale: float) -> tuple[int, ...]:
    """Shape of a plane at the network's scale, as :func:`rescale_plane` makes it.

    Examples
    --------
    >>> network_shape((256, 256), 1.6)
    (410, 410)
    """
    if abs(scale - 1) < 1e-3:
        return tuple(shape)
    return tuple(max(1, round(scale * n)) for n in shape)


def _fits_one_tile(shape: tuple[int, ...], scale: float, tile_shape: Any, area: float) -> bool:
    """Whether the plane, at the network's scale, is one tile of ``tile_shape`` and ``area`` px."""
    m = network_shape(shape, scale)
    sides = tile_shape if isinstance(tile_shape, (tuple, list)) else (tile_shape,) * len(m)
    covered = all(t is None or t == -1 or n <= t for n, t in zip(m, sides, strict=True))
    return covered and math.prod(m) <= area


def _brightest_window(x: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side`` x ``side`` window with the largest sum (coarse search)."""
    h, w = x.shape
    if h <= side and w <= side:
        return 0, 0
    integral = np.pad(np.cumsum(np.cumsum(np.clip(x, 0, 1), 0), 1), ((1, 0), (1, 0)))
    step = max(1, side // 4)
    ys = np.unique(np.r_[np.arange(0, max(h - side, 0) + 1, step), max(h - side, 0)])
    xs = np.unique(np.r_[np.arange(0, max(w - side, 0) + 1, step), max(w - side, 0)])
    y1, x1 = np.minimum(ys + side, h), np.minimum(xs + side, w)
    sums = (
        integral[np.ix_(y1, x1)]
        - integral[np.ix_(ys, x1)]
        - integral[np.ix_(y1, xs)]
        + integral[np.ix_(ys, xs)]
    )
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(ys[iy]), int(xs[ix])


def _cached(model: str, device: str) -> NucleusSegmenter:
    """Former cached loader: now :func:`cytolens.models.load` (one cache)."""
    return NucleusSegmenter.from_pretrained(model, device=device)


def nuclei(
    image: Any,
    *,
    model: str = DEFAULT_MODEL,
    diameter: float | None = None,
    pixel_size_um: Any = None,
    device: str = "auto",
    tile_shape: Any = 512,
    axes: str | None = None,
    channel: int | None = None,
    invert: bool | None = None,
    progress: Any = False,
    stain: str | None = None,
    chunk_shape: Any = None,
) -> np.ndarray:
    """Segment nuclei in a 2-D image with a shipped deep-learning model.

    Parameters
    ----------
    image : array_like, dask.array.Array or cytolens.io.Image
        One 2-D plane: ``(Y, X)``, RGB/RGBA ``(Y, X, 3|4)``, or any axes given
        by ``axes`` or the ``Image`` (singleton T/Z allowed). Any size: planes
        above 4096 x 4096 px, Dask/Zarr input and ``chunk_shape`` go chunk by
        chunk in bounded memory (:func:`cytolens.segment.chunked.segment_chunked`;
        its ``out=`` writes labels to Zarr); others are segmented whole.
    model : str
        Name of a shipped model.
    diameter : float, optional
        Typical nucleus diameter: in pixels, or in micrometres when
        ``pixel_size_um`` is given. When omitted it is estimated (module
        notes), which costs up to one more network pass.
    pixel_size_um : float, (float, float) or dict, optional
        Pixel size in micrometres, e.g. ``image.pixel_size_um``; only used to
        convert ``diameter`` from micrometres (an ``Image``'s own pixel size
        is never applied implicitly, so the unit of ``diameter`` is always
        the one you chose).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs.
    tile_shape : int or (int, int)
        Tile size in pixels at the network's scale (images are first rescaled
        so nuclei are about 16 px wide); lower it to save memory.
    axes : str, optional
        Axes of a plain array, e.g. ``"CYX"``; required for 3-D arrays that
        are not RGB/RGBA.
    channel : int, optional
        Index of the nuclear stain along ``C``; RGB(A) is averaged otherwise.
    invert : bool, optional
        Force (True) or forbid (False) inverting dark nuclei on a bright
        background; by default decided from the image (brightfield, H&E).
    progress : bool or callable
        Show a rich progress bar over tiles, or call ``progress(done, total)``.
    stain : {"auto", "fluorescence", "brightfield", "he", "mean"}, optional
        How the image becomes the plane of bright nuclei
        (:func:`~cytolens.segment.preprocess.prepared_plane`); by default the
        model's own (its card's ``parameters.stain``: ``"auto"`` decides from
        the image, and the log says what it chose).
    chunk_shape : int or (int, int), optional
        Segment chunk by chunk, reading regions of this shape (halo of 3
        nucleus diameters included); refused, naming the minimum, when too
        small for the diameter. Same labels as whole up to their numbering.

    Returns
    -------
    numpy.ndarray of uint32, shape (Y, X)
        0 = background, 1..N nuclei.

    Raises
    ------
    InputError
        For an empty array, NaN or infinite values, a 3-D array without
        ``axes``, a Z stack, an unclear channel, a side under 16 px,
        intensities beyond the float32 range, a ``diameter`` outside
        3 px .. the shorter side (it would zoom the image absurdly; see
        :mod:`cytolens.segment.preprocess`), or tiles smaller than twice the
        model's overlap.
    ModelError
        For an unknown model or damaged weights.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(((yy - cy) ** 2 + (xx - cx) ** 2 < 8**2) for cy, cx in [(30, 30), (90, 60)])
    >>> labels = nuclei(100 + 500 * img.astype(np.float32), diameter=16, device="cpu")
    >>> int(labels.max()), labels.dtype.name
    (2, 'uint32')
    """
    return _cached(model, str(device)).segment(
        image,
        diameter=diameter,
        pixel_size_um=pixel_size_um,
        axes=axes,
        channel=channel,
        invert=invert,
        tile_shape=tile_shape,
        progress=progress,
        stain=stain,
        chunk_shape=chunk_shape,
    )
