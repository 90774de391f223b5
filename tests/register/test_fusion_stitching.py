"""Multiview fusion, tile stitching and CZI reading."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.register import Transform, transform_image
from cytolens.register.fusion import fuse, psf_in_common_frame
from cytolens.register.stitching import stitch
from cytolens.register.synthetic import dual_view, textured_scene
from cytolens.restore import fwhm


@pytest.fixture(scope="module")
def views():
    return dual_view((56, 56, 56), seed=0, n_beads=16)


def _bead_fwhm(image: np.ndarray, beads: np.ndarray) -> np.ndarray:
    """Median FWHM (Z, Y, X) over beads away from the others."""
    out = []
    for b in beads:
        crop = image[tuple(slice(c - 6, c + 7) for c in b)]
        if crop.shape == (13, 13, 13) and np.unravel_index(crop.argmax(), crop.shape) == (6, 6, 6):
            out.append(fwhm(crop))
    return np.nanmedian(np.array(out), axis=0)


def test_joint_deconvolution_is_isotropic(views) -> None:
    ts = [Transform.identity(3), views.transform_b]
    single = _bead_fwhm(views.view_a, views.beads)
    fused = fuse(
        [views.view_a, views.view_b], ts, psfs=[views.psf] * 2, method="joint-deconvolution"
    )
    both = _bead_fwhm(fused, views.beads)
    assert single[0] / single[2] > 2.5  # one view: Z several times worse than X
    assert both[0] / both[2] < 1.3  # the goal of the issue
    mean = fuse([views.view_a, views.view_b], ts, method="mean")
    assert _bead_fwhm(mean, views.beads)[0] > both[0]


def test_fusion_chunked_equals_whole(views) -> None:
    ts = [Transform.identity(3), views.transform_b]
    for method, rtol in (("mean", 1e-6), ("joint-deconvolution", 0.02)):
        kw = {"psfs": [views.psf] * 2} if method == "joint-deconvolution" else {}
        whole = fuse([views.view_a, views.view_b], ts, method=method, **kw)
        chunked = fuse(
            [views.view_a, views.view_b], ts, method=method, chunk_shape=(56, 56, 28), **kw
        )
        assert np.abs(chunked - whole).max() <= rtol * whole.max(), method


def test_fusion_bad_input(views) -> None:
    with pytest.raises(InputError, match="different dimensionality"):
        fuse([views.view_a, views.view_a[0]], [Transform.identity(3), Transform.identity(2)])
    with pytest.raises(InputError, match="one PSF per view"):
        fuse([views.view_a], [Transform.identity(3)], method="joint-deconvolution")
    with pytest.raises(InputError, match="1 transform"):
        fuse([views.view_a, views.view_b], [Transform.identity(3)])


def test_psf_turns_with_the_view() -> None:
    from cytolens.restore import gaussian_psf

    psf = gaussian_psf((13, 7, 7), (3.0, 1.0, 1.0))
    turn = Transform.from_linear([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], kind="rigid")
    turned = psf_in_common_frame(psf, turn)
    w = fwhm(turned)
    assert w[2] > 2 * w[0]  # the long axis is now X
    assert turned.sum() == pytest.approx(1.0, rel=1e-5)


def test_stitch_recovers_jittered_positions() -> None:
    scene = textured_scene((100, 200), seed=3)
    rng = np.random.default_rng(0)
    true = np.array([(0, 0), (0, 60), (0, 120), (40, 0), (40, 60), (40, 120)], float)
    tiles = [scene[int(y) : int(y) + 60, int(x) : int(x) + 80] for y, x in true]
    stage = true + rng.uniform(-2, 2, true.shape)
    result = stitch(tiles, stage)
    fitted = result.positions - result.positions[0] + true[0]
    assert np.abs(fitted - true).max() < 0.5
    assert result.pairs["accepted"].all()
    # positions are fitted to ~0.01 px; resampling tiles by that fraction changes values ~1e-3
    np.testing.assert_allclose(result.image, scene[:100, :200], atol=0.01)


def test_stitch_rejects_a_bad_pair_with_reason() -> None:
    scene = textured_scene((64, 170), seed=4)
    tiles = [scene[:, :70], scene[:, 50:120], scene[:, 100:]]
    noise = np.random.default_rng(1).random(tiles[2].shape).astype(np.float32)
    tiles[2] = noise  # tile 2 shows something else: its pair cannot be trusted
    result = stitch(tiles, [(0, 0), (0, 50), (0, 100)])
    bad = result.pairs[result.pairs.tile_b == 2]
    assert not bad["accepted"].any()
    assert bad["reason"].str.contains("NCC").all()
    assert result.pairs[(result.pairs.tile_a == 0) & (result.pairs.tile_b == 1)]["accepted"].all()


def test_stitch_without_overlap_is_an_error() -> None:
    tiles = [np.ones((20, 20)), np.ones((20, 20))]
    with pytest.raises(InputError, match=r"overlap no other tile"):
        stitch(tiles, [(0, 0), (0, 40)])
    with pytest.raises(InputError, match="different dimensionality"):
        stitch([np.ones((20, 20)), np.ones((2, 20, 20))], [(0, 0), (0, 10)])


def test_real_czi_mosaic() -> None:
    from cytolens.io import imread
    from cytolens.io.czi import read_czi_tiles

    path = shared("registration/mosaic_czi/mosaic_test.czi")
    tiles = read_czi_tiles(path)
    assert tiles.axes == "YX" and len(tiles.tiles) == 2
    np.testing.assert_array_equal(tiles.positions, [[0, 0], [0, 832]])
    assert tiles.pixel_size_um["X"] == pytest.approx(1.0833, rel=1e-3)
    image = imread(path)
    assert image.shape == (624, 1756) and image.axes == "YX"
    result = stitch(tiles.tiles, tiles.positions)
    row = result.pairs.iloc[0]
    assert row["accepted"]
    assert row["ncc_after"] > 0.9 > 0.5 > row["ncc_before"]
    offset = np.subtract(*result.positions[[1, 0]])
    # the stage says 832 px right; the content says about 825 right and 1.7 up
    assert 820 < offset[1] < 830 and abs(offset[0]) < 4
    assert result.image.shape[1] < 1756


def test_transform_image_dask_stays_lazy_for_fusion(views) -> None:
    import dask.array as da

    a = da.from_array(views.view_a, chunks=24)
    b = da.from_array(views.view_b, chunks=24)
    fused = fuse([a, b], [Transform.identity(3), views.transform_b], method="mean")
    assert isinstance(fused, da.Array)
    ref = fuse([views.view_a, views.view_b], [Transform.identity(3), views.transform_b])
    np.testing.assert_allclose(fused.compute(), ref, rtol=1e-5, atol=1e-3)
    back = transform_image(views.view_b, views.transform_b, device="cpu")
    assert back.shape == views.view_a.shape
