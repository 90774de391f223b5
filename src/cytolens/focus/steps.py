"""Pipeline step of the focus capability: ``focus.rate``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cytolens.focus.model import DEFAULT_MODEL
from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["PATCH_TABLE", "RateFocus", "rated_plane"]

#: Name of the per-patch table ``focus.rate`` leaves in ``item.tables`` (combined over a run).
PATCH_TABLE = "focus_patches"
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
