import dask.array as da
import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.core.normalize import sample_percentiles


def test_small_image_equals_numpy_percentile():
    x = np.random.default_rng(0).gamma(2.0, 50.0, (3, 97, 131)).astype(np.float32)
    expected = np.percentile(x, (1, 99.8))
    np.testing.assert_allclose(sample_percentiles(x, 1, 99.8), expected, rtol=1e-6)


def test_large_image_reads_a_bounded_sample_close_to_the_full_percentiles():
    rng = np.random.default_rng(1)
    x = rng.normal(100.0, 10.0, (2048, 2048)).astype(np.float32)
    lo, hi = sample_percentiles(x, 1, 99, max_pixels=1 << 16)
    full_lo, full_hi = np.percentile(x, (1, 99))
    # 65k samples of a normal: the 1% / 99% quantiles are within ~0.3 sigma
    assert abs(lo - full_lo) < 3.0 and abs(hi - full_hi) < 3.0


def test_dask_input_and_leading_axes_sampled_evenly():
    frames = np.stack([np.full((16, 16), t, np.float32) for t in range(100)])
    lo, hi = sample_percentiles(da.from_array(frames, chunks=(10, 16, 16)), 0, 100, max_planes=5)
    assert (lo, hi) == (0.0, 99.0)  # first and last frames are among the 5 picks


def test_non_finite_and_one_d_are_refused():
    with pytest.raises(InputError, match="non-finite"):
        sample_percentiles(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="at least 2 axes"):
        sample_percentiles(np.arange(5.0))
