"""Axes vocabulary, input validation, the Image object and normalization."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core import AxesError, CytolensError, Image, InputError, check_axes, guess_axes
from cytolens.core.axes import move_axes
from cytolens.core.normalize import Normalizer, normalize_percentile
from cytolens.core.validate import check_array


@pytest.mark.parametrize(
    ("axes", "shape", "fragment"),
    [
        ("ZYQ", (2, 3, 4), "unknown letter(s) 'Q'"),
        ("YYX", (2, 3, 4), "repeats 'Y'"),
        ("YX", (2, 3, 4), "2 letter(s) but the array has 3"),
    ],
)
def test_check_axes_rejects_bad_strings_with_the_reason(axes, shape, fragment):
    with pytest.raises(AxesError) as err:
        check_axes(axes, shape)
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, CytolensError)


def test_check_axes_normalizes_case():
    assert check_axes("tzyx", (1, 2, 3, 4)) == "TZYX"


def test_guess_axes_only_guesses_unambiguous_shapes():
    assert guess_axes((10, 20)) == "YX"
    assert guess_axes((10, 20, 3)) == "YXC"
    assert guess_axes((5, 20, 30)) == "ZYX"
    with pytest.raises(AxesError, match="pass axes explicitly"):
        guess_axes((2, 3, 4, 5))


def test_move_axes_is_a_permutation_and_refuses_other_letters():
    x = np.zeros((4, 5, 3))
    assert x.transpose(move_axes("YXC", "CYX")).shape == (3, 4, 5)
    with pytest.raises(AxesError, match="letters differ"):
        move_axes("YX", "ZY")


@pytest.mark.parametrize(
    ("array", "kwargs", "fragment"),
    [
        (np.zeros((0, 5)), {}, "is empty"),
        (np.zeros((4, 4), np.complex64), {}, "unsupported dtype complex64"),
        (np.array([["a"]]), {}, "unsupported dtype <U1"),
        (np.zeros((4, 4)), {"ndim": (3, 4)}, "must be 3-D or 4-D, got 2-D"),
        (np.array([[1.0, np.nan], [np.inf, 0]]), {}, "2 non-finite value(s)"),
    ],
)
def test_check_array_bad_input_names_the_problem(array, kwargs, fragment):
    with pytest.raises(InputError) as err:
        check_array(array, name="stack.tif", **kwargs)
    assert fragment in str(err.value)
    assert "stack.tif" in str(err.value)


def test_check_array_nan_message_points_at_first_bad_index():
    x = np.zeros((3, 4), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(InputError, match=r"first at index \(2, 1\)"):
        check_array(x)


def test_check_array_accepts_lists_and_leaves_arrays_uncopied():
    x = np.ones((3, 3), np.uint16)
    assert check_array(x) is x
    assert check_array([[1, 2], [3, 4]]).shape == (2, 2)


def test_image_checks_axes_pixel_sizes_and_channel_names():
    with pytest.raises(AxesError, match="2 letter"):
        Image(np.zeros((2, 3, 4)), "YX")
    with pytest.raises(AxesError, match="absent from axes"):
        Image(np.zeros((3, 4)), "YX", pixel_size_um={"Z": 1.0})
    with pytest.raises(InputError, match="must be > 0"):
        Image(np.zeros((3, 4)), "YX", pixel_size_um={"X": 0.0})
    with pytest.raises(InputError, match="1 channel name"):
        Image(np.zeros((2, 3, 4)), "CYX", channel_names=("dna",))


def test_image_transpose_keeps_metadata():
    img = Image(np.arange(24).reshape(2, 3, 4), "CYX", {"Y": 0.5, "X": 0.5}, ("a", "b"))
    t = img.transpose("YXC")
    assert t.shape == (3, 4, 2) and t.axes == "YXC"
    assert t.pixel_size_um == {"Y": 0.5, "X": 0.5} and t.channel_names == ("a", "b")
    np.testing.assert_array_equal(t.data[..., 1], img.data[1])
    assert t.sizes == {"Y": 3, "X": 4, "C": 2}


def test_normalize_matches_csbdeep_definition():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 100.0, size=(64, 64)).astype(np.uint16)
    lo, hi = np.percentile(x, (1, 99.8))
    expected = (x - lo) / (hi - lo + 1e-20)
    out = normalize_percentile(x, 1, 99.8)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_normalize_per_channel_and_clip():
    x = np.stack([np.linspace(0, 1, 100), np.linspace(0, 1000, 100)]).astype(np.float32)
    out = normalize_percentile(x, 0, 100, axis=1, clip=True)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    assert out.min() == 0 and out.max() == 1


def test_normalizer_validates_percentiles():
    with pytest.raises(ValueError, match="pmin"):
        Normalizer(pmin=99, pmax=1)
    with pytest.raises(ValueError):
        Normalizer(pmin=1, pmax=99, bogus=True)
