"""Convert a :class:`~cytolens.core.image.Image` to napari layer-data tuples."""

from __future__ import annotations

from typing import Any

from cytolens.core.image import Image

#: napari colormaps for the HPA channels, in the order of :data:`cytolens.io.HPA_CHANNELS`.
HPA_COLORMAPS = {"microtubules": "red", "protein": "green", "nucleus": "blue", "ER": "yellow"}


def image_layer(image: Image, name: str | None = None, **extra: Any) -> tuple[Any, dict, str]:
    """Return the ``(data, kwargs, "image")`` tuple napari shows for ``image``.

    Pixel sizes (um) become ``scale`` (1 for axes without one); a ``C`` axis
    becomes ``channel_axis`` with one layer per channel named after the
    channel, except a trailing unnamed axis of 3 or 4 (RGB/RGBA), shown as
    colour.

    Examples
    --------
    >>> import numpy as np
    >>> img = Image(np.zeros((2, 8, 8)), "CYX", {"Y": 0.5, "X": 0.5}, ("a", "b"))
    >>> _, kwargs, kind = image_layer(img)
    >>> kind, kwargs["channel_axis"], kwargs["scale"], kwargs["name"]
    ('image', 0, (0.5, 0.5), ['a', 'b'])
    """
    axes = image.axes
    base = name or (image.path.name if image.path is not None else "image")
    kwargs: dict[str, Any] = {
        "metadata": {"axes": axes, "pixel_size_um": dict(image.pixel_size_um)}
    }
    if "C" in axes:
        c = axes.index("C")
        n = image.data.shape[c]
        rgb = c == len(axes) - 1 and n in (3, 4) and image.channel_names is None
        if rgb:
            kwargs["rgb"] = True
        else:
            kwargs["channel_axis"] = c
            names = image.channel_names or tuple(f"{base} [{i}]" for i in range(n))
            kwargs["name"] = list(names)
            if set(names) == set(HPA_COLORMAPS):
                kwargs["colormap"] = [HPA_COLORMAPS[n] for n in names]
                kwargs["blending"] = "additive"
        spatial = axes.replace("C", "")
    else:
        spatial = axes
    kwargs.setdefault("name", base)
    kwargs["scale"] = tuple(float(image.pixel_size_um.get(ax, 1.0)) for ax in spatial)
    kwargs["axis_labels"] = tuple(ax.lower() for ax in spatial)
    if image.pixel_size_um:
        kwargs["units"] = tuple("um" if ax in image.pixel_size_um else "pixel" for ax in spatial)
    kwargs.update(extra)
    return image.data, kwargs, "image"
