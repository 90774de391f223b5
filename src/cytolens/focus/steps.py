"""Pipeline steps of the focus capability: ``focus.rate`` and ``focus.best_plane``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.focus.model import DEFAULT_MODEL
from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["PATCH_TABLE", "PLANE_TABLE", "BestPlane", "RateFocus", "rated_plane"]

#: Name of the per-patch table ``focus.rate`` leaves in ``item.tables`` (combined over a run).
PATCH_TABLE = "focus_patches"
#: Name of the per-plane table ``focus.best_plane`` leaves in ``item.tables``.
PLANE_TABLE = "focus_planes"
#: What the user of a z-stack should do instead (appended to the error about extra planes).
_STACK_HINT = "use `cytolens focus best-plane` for a z-stack"


class RateFocusParams(StepParams):
    """Parameters of ``focus.rate`` (see :func:`cytolens.focus.rate_focus`)."""

    model: str = DEFAULT_MODEL
    patch_size: int = Field(84, ge=16, le=4096)
    batch_size: int = Field(256, ge=1)
    channel: int | None = Field(None, ge=0)
    device: str = "auto"


def rated_plane(image: Any, channel: int | None = None, name: str = "image") -> Any:
    """The 2-D grey plane that ``focus.rate`` rates (lazy for a Dask image).

    Singleton axes are dropped, ``channel`` picked, RGB(A) averaged; a
    z-stack is refused with a pointer to ``cytolens focus best-plane``.

    Examples
    --------
    >>> import numpy as np
    >>> rated_plane(np.zeros((1, 32, 48)), name="a.tif")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: a.tif has shape (1, 32, 48) (3-D) and no axes; ...
    >>> rated_plane(np.zeros((32, 48, 3), np.uint8)).shape
    (32, 48)
    """
    from cytolens.core.plane import single_plane

    return single_plane(image, channel=channel, name=name, hint=_STACK_HINT, lazy=True)[0]


class RateFocus(Step):
    """Rate the focus of the item's image patch by patch.

    Leaves the whole rating on the item: the per-patch table
    ``item.tables["focus_patches"]`` (one row per patch: ``image``, grid
    ``row``/``col``, ``y0_px``, ``x0_px``, ``height_px``, ``width_px``, the
    level probabilities ``p0`` ..., ``level``, ``expected_level``,
    ``certainty``, ``is_blank``), and in the row the image's verdict
    (``focus_verdict``, ``focus_mean_level``, ``focus_p_in_focus``,
    ``focus_certainty``, ``focus_blank_fraction``) and applicability
    (``ood_score``, ``domain_percentile``, ``in_domain``). :meth:`rate` does
    the same and also returns the :class:`~cytolens.focus.FocusResult`, for
    callers that draw it (overlays).

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("nuclei_bbbc006.png"), "n", data.nuclei())
    >>> RateFocus({"patch_size": 84}).run(item)
    >>> item.row["focus_verdict"], len(item.tables["focus_patches"])
    ('in focus', 48)
    >>> list(item.tables["focus_patches"].columns[:7])
    ['image', 'row', 'col', 'y0_px', 'x0_px', 'height_px', 'width_px']
    """

    name = "focus.rate"
    Params = RateFocusParams
    gives = ("focus", f"table:{PATCH_TABLE}")

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)]

    def run(self, item: Item, *, progress: Any = None) -> None:
        """Rate ``item`` (see the class); ``progress(done, total)`` follows the patches."""
        self.rate(item, progress=progress)

    def rate(self, item: Item, *, progress: Any = None) -> Any:
        """:meth:`run`, returning the :class:`~cytolens.focus.FocusResult` as well."""
        from cytolens.focus.model import FocusModel
        from cytolens.focus.rate import rate_focus
        from cytolens.models.applicability import score_input

        p = self.params
        plane = rated_plane(item.image, p.channel, item.source.name)
        model: Any = FocusModel.load(p.model, device=p.device)
        res = rate_focus(
            plane,
            patch_size=p.patch_size,
            model=model,
            batch_size=p.batch_size,
            progress=progress,
        )
        table = res.patches.copy()
        at = table.columns.get_loc("x0_px") + 1
        table.insert(at, "height_px", res.patch_size)
        table.insert(at + 1, "width_px", res.patch_size)
        table.insert(0, "image", item.name)
        item.tables[PATCH_TABLE] = table
        summary = res.summary()
        for key in ("verdict", "mean_level", "p_in_focus", "certainty", "blank_fraction"):
            item.row[f"focus_{key}"] = summary[key]
        item.row.update(score_input(model, plane, item.name))
        return res


class BestPlaneParams(StepParams):
    """Parameters of ``focus.best_plane`` (see :func:`cytolens.focus.best_plane`)."""

    method: str = Field("model", description="model, or a classical sharpness measure")
    model: str = DEFAULT_MODEL
    patch_size: int = Field(84, ge=16, le=4096)
    batch_size: int = Field(256, ge=1)
    channel: int | None = Field(None, ge=0, description="channel rated in a multi-channel stack")
    save_plane: bool = Field(False, description="also write the chosen plane (best_plane/)")
    device: str = "auto"

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from cytolens.focus.rate import check_method

        try:
            return check_method(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None


class BestPlane(Step):
    """Pick the best-focused plane of the item's z-stack; that plane becomes the item's image.

    The stack's singleton axes are dropped; a ``C`` axis with several
    channels needs ``channel`` (the one rated), a ``T`` axis with several
    time points is refused. The item's image becomes the chosen plane with
    all its channels (axes without ``Z``, pixel sizes kept), so a following
    step (``segment.nuclei``) works on it. Leaves the per-plane table
    ``item.tables["focus_planes"]`` (``image``, ``z_px`` and the scores of
    :func:`~cytolens.focus.best_plane`, ``has_content``) and in the row
    ``best_z_px`` (and ``best_z_um`` when the stack states its Z step),
    ``planes`` and ``planes_with_content``. With ``save_plane`` the plane is
    also an output image (``best_plane/<name>.ome.zarr``).

    Examples
    --------
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cytolens.pipeline import Item
    >>> stack = np.zeros((3, 32, 32), np.float32)
    >>> stack[1, 8:24, 8:24] = 1
    >>> item = Item(Path("s.tif"), "s", Image(stack, "ZYX", {"Z": 0.5, "Y": 0.1, "X": 0.1}))
    >>> BestPlane({"method": "normalized_variance"}).run(item)
    >>> item.row["best_z_px"], item.row["best_z_um"], item.image.axes, item.image.pixel_size_um
    (1, 0.5, 'YX', {'Y': 0.1, 'X': 0.1})
    >>> list(item.tables["focus_planes"].columns)
    ['image', 'z_px', 'normalized_variance', 'has_content']
    """

    name = "focus.best_plane"
    Params = BestPlaneParams
    gives = ("image", f"table:{PLANE_TABLE}")

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)] if self.params.method == "model" else []

    def run(self, item: Item, *, progress: Any = False) -> None:
        """Pick ``item``'s best plane (see the class); ``progress`` follows the planes.

        ``progress`` is True for a rich bar, or a callable given ``(done, total)``.
        """
        from cytolens.focus.rate import best_plane

        p = self.params
        stack, rated = _stack_and_rated(item.image, p.channel, item.source.name)
        model: Any = p.model
        if p.method == "model":
            from cytolens.focus.model import FocusModel

            model = FocusModel.load(p.model, device=p.device)
        best, scores = best_plane(
            rated,
            method=p.method,
            patch_size=p.patch_size,
            model=model,
            device=p.device,
            batch_size=p.batch_size,
            progress=progress,
            name=str(item.source),
        )
        scores.insert(0, "image", item.name)
        item.tables[PLANE_TABLE] = scores
        item.row["best_z_px"] = best
        if "Z" in stack.pixel_size_um:
            item.row["best_z_um"] = round(best * stack.pixel_size_um["Z"], 6)
        item.row["planes"] = len(scores)
        item.row["planes_with_content"] = int(scores["has_content"].sum())
        index = tuple(best if a == "Z" else slice(None) for a in stack.axes)
        item.image = Image(
            stack.data[index],
            stack.axes.replace("Z", ""),
            {a: s for a, s in stack.pixel_size_um.items() if a != "Z"},
            stack.channel_names,
            stack.path,
            dict(stack.metadata),
        )
        if p.save_plane:
            item.images["best_plane"] = item.image


def _stack_and_rated(image: Image, channel: int | None, name: str) -> tuple[Image, Image]:
    """The stack without singleton axes, and its ZYX stack that is rated (``channel`` picked)."""
    keep = "".join(a for a, s in zip(image.axes, image.shape, strict=True) if s != 1 or a in "ZYX")
    stack = image
    if keep != image.axes:
        stack = Image(
            image.data.reshape([image.sizes[a] for a in keep]),
            keep,
            dict(image.pixel_size_um),
            image.channel_names if "C" in keep else None,
            image.path,
            dict(image.metadata),
        )
    if "Z" not in stack.axes:
        raise InputError(
            f"{name} has axes {stack.axes!r} (shape {stack.shape}), no Z axis: give a z-stack "
            "(a file with a Z axis, e.g. --axes ZYX, or several plane files)"
        )
    if "T" in stack.axes:
        raise InputError(
            f"{name} has {stack.sizes['T']} time points (axes {stack.axes!r}); the best plane "
            "is picked in one z-stack: select one time point first"
        )
    rated = stack
    if "C" in stack.axes:
        n_c = stack.sizes["C"]
        if channel is None or channel >= n_c:
            given = "no channel" if channel is None else f"channel {channel}"
            raise InputError(
                f"{name} has {n_c} channels (axes {stack.axes!r}) and {given} was given; "
                f"give channel (0 to {n_c - 1}) to rate"
            )
        index = tuple(channel if a == "C" else slice(None) for a in stack.axes)
        rated = Image(stack.data[index], stack.axes.replace("C", ""))
    elif channel:
        raise InputError(
            f"{name} has one channel (axes {stack.axes!r}); channel {channel} is out of range"
        )
    return stack, rated
