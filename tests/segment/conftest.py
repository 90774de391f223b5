"""Synthetic nuclei shared by the segmentation tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _disc_image(
    shape: tuple[int, int],
    centres: list[tuple[float, float]],
    radius: float,
    *,
    background: float = 100,
    amplitude: float = 800,
    noise: float = 20,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Bright noisy discs on a dim background (float32) and their uint16 labels."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = i
    rng = np.random.default_rng(seed)
    image = background + amplitude * (labels > 0) + rng.normal(0, noise, shape)
    return image.astype(np.float32), labels


@pytest.fixture
def disc_image() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Factory of synthetic disc images: ``disc_image(shape, centres, radius, **levels)``."""
    return _disc_image
