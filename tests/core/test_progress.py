"""Progress reporting shared by API functions and commands."""

from __future__ import annotations

import pytest

from cytolens.core.errors import InputError
from cytolens.core.progress import progress_bar, progress_reporter


def test_callable_gets_done_and_the_latest_total() -> None:
    seen: list[tuple[int, int | None]] = []
    with progress_reporter(lambda d, t: seen.append((d, t)), 10) as update:
        update(1)
        update(2, 4)  # a stop rule shortened the work
        update(3)
    assert seen == [(1, 10), (2, 4), (3, 4)]


@pytest.mark.parametrize("progress", [True, False, None])
def test_bar_and_silence_accept_updates(progress: bool | None) -> None:
    with progress_reporter(progress, 3, "testing") as update:
        for k in range(1, 4):
            update(k)
        update(3, 3)


@pytest.mark.parametrize("bad", ["yes", 1.5, 3])
def test_bad_progress_value_is_named(bad: object) -> None:
    with pytest.raises(InputError, match="progress must be True, False or a callable"):
        with progress_reporter(bad, 3):  # type: ignore[arg-type]
            pass


def test_progress_bar_counts() -> None:
    with progress_bar(disable=True) as bar:
        task = bar.add_task("x", total=2)
        bar.advance(task, 2)
        assert bar.tasks[0].completed == 2
