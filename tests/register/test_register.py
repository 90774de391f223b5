"""Registration, transforms and resampling on known-truth synthetic cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cytolens.core.errors import FileFormatError, InputError
from cytolens.register import RegistrationWarning, Transform, register, transform_image
from cytolens.register.synthetic import random_transform, textured_scene, warped_pair


def _tre(found: Transform, true: Transform, shape: tuple[int, ...], sizes=None) -> float:
    """Largest distance (in pixels) between the two transforms at the corners and centre."""
    s = np.ones(len(shape)) if sizes is None else np.asarray(sizes)
    corners = (
        np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(len(shape), -1).T
    )
    pts = np.vstack([corners, (np.array(shape) - 1) / 2]) * s
    return float(
        np.max(np.linalg.norm((found.apply_points(pts) - true.apply_points(pts)) / s, axis=1))
    )


@pytest.mark.parametrize("kind", ["translation", "rigid", "affine"])
def test_register_2d_known_truth(kind: str) -> None:
    scene = textured_scene((112, 112), seed=1)
    true = random_transform(kind, (80, 80), rng=3, max_shift=5, max_angle_deg=6)
    fixed, moving = warped_pair(scene, (80, 80), true)
    found = register(fixed, moving, transform=kind, device="cpu")
    assert found.converged
    assert found.kind == kind
    assert found.quality["ncc_after"] > max(found.quality["ncc_before"], 0.98)
    # sub-pixel: the tolerance is a quarter pixel at the worst corner
    assert _tre(found, true, (80, 80)) < 0.25


@pytest.mark.parametrize("kind", ["rigid", "affine"])
def test_register_3d_anisotropic(kind: str) -> None:
    sizes = (0.8, 0.4, 0.4)  # Z voxels twice as long
    scene = textured_scene((40, 72, 72), sigma=2.0, seed=2)
    true = random_transform(
        kind,
        (28, 48, 48),
        rng=5,
        max_shift=2.5,
        max_angle_deg=3,
        max_affine=0.02,
        pixel_size_um=sizes,
    )
    fixed, moving = warped_pair(scene, (28, 48, 48), true, pixel_size_um=sizes)
    found = register(fixed, moving, transform=kind, pixel_size_um=sizes, device="cpu")
    assert found.units == "um" and found.converged
    assert _tre(found, true, (28, 48, 48), sizes) < 0.5


def test_translation_subpixel_and_initial() -> None:
    scene = textured_scene((96, 96), seed=4)
    true = Transform.from_translation((3.3, -6.6))
    fixed, moving = warped_pair(scene, (64, 64), true)
    found = register(fixed, moving, transform="translation")
    np.testing.assert_allclose(found.translation, [3.3, -6.6], atol=0.1)
    # an initial transform close to the truth is refined, not replaced
    start = Transform.from_translation((3.0, -6.0))
    again = register(fixed, moving, transform="translation", initial=start, phase_correlation=False)
    np.testing.assert_allclose(again.translation, [3.3, -6.6], atol=0.1)


def test_mask_restricts_comparison() -> None:
    scene = textured_scene((96, 96), seed=5)
    true = Transform.from_translation((2.0, 1.0))
    fixed, moving = warped_pair(scene, (64, 64), true)
    mask = np.zeros(fixed.shape, bool)
    mask[8:56, 8:56] = True
    found = register(fixed, moving, transform="translation", mask=mask)
    np.testing.assert_allclose(found.translation, [2.0, 1.0], atol=0.1)
    with pytest.raises(InputError, match="mask has shape"):
        register(fixed, moving, mask=mask[:10])


def test_non_convergence_is_flagged() -> None:
    scene = textured_scene((96, 96), seed=6)
    fixed, moving = warped_pair(scene, (64, 64), random_transform("rigid", (64, 64), rng=1))
    with pytest.warns(RegistrationWarning, match="did not converge"):
        found = register(fixed, moving, transform="affine", max_iterations=1)
    assert found.converged is False


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match=r"2D.*3D|3D.*2D"):
        register(np.zeros((16, 16)), np.zeros((8, 16, 16)))
    with pytest.raises(InputError, match="transform must be one of"):
        register(np.zeros((16, 16)), np.zeros((16, 16)), transform="bspline")
    with pytest.raises(InputError, match="cannot resample"):
        transform_image(np.zeros((8, 8)), Transform.identity(3))


def test_transform_algebra_and_json(tmp_path) -> None:
    a = random_transform("affine", (20, 30, 40), rng=0)
    b = random_transform("rigid", (20, 30, 40), rng=1)
    pts = np.random.default_rng(0).random((5, 3)) * 20
    np.testing.assert_allclose((a @ b).apply_points(pts), a.apply_points(b.apply_points(pts)))
    np.testing.assert_allclose((a @ a.inverse()).matrix, np.eye(4), atol=1e-12)
    t = Transform(a.matrix, kind="affine", quality={"ncc_after": 0.9, "converged": True})
    path = tmp_path / "t.json"
    t.to_json(path)
    back = Transform.from_json(path)
    np.testing.assert_array_equal(back.matrix, t.matrix)
    assert back.quality == {"ncc_after": 0.9, "converged": True}
    assert back.kind == "affine"
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": [1, 2]}')
    with pytest.raises(FileFormatError, match="is not a transform"):
        Transform.from_json(bad)
    bad.write_text("not json at all")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        Transform.from_json(bad)
    with pytest.raises(InputError, match="singular"):
        Transform(np.zeros((3, 3)) + np.diag([0, 0, 1]))


def test_transform_image_chunked_equals_whole_and_dask_is_lazy() -> None:
    import dask.array as da

    image = textured_scene((30, 41, 37), seed=7)
    t = random_transform("affine", image.shape, rng=2)
    whole = transform_image(image, t, device="cpu")
    chunked = transform_image(image, t, chunk_shape=(11, 16, 9), device="cpu")
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    lazy = transform_image(da.from_array(image, chunks=(15, 20, 20)), t, device="cpu")
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), whole, atol=1e-5)


def test_transform_image_matches_scipy() -> None:
    from scipy import ndimage as ndi

    image = textured_scene((40, 50), seed=8)
    t = random_transform("affine", image.shape, rng=4)
    ours = transform_image(image, t, order=1, cval=0.0)
    ref = ndi.affine_transform(image, t.matrix, order=1, cval=0.0, mode="constant")
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(ours[inner], ref[inner], atol=1e-5)


def test_no_warning_on_easy_case() -> None:
    scene = textured_scene((80, 80), seed=9)
    fixed, moving = warped_pair(scene, (56, 56), Transform.from_translation((1, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        register(fixed, moving, transform="rigid")
