import itertools

import pytest

from vigie_ingest import RateSampler


def kept_times(
    source_fps: float, sample_fps: float, seconds: float = 10.0, start: float = 0.0
) -> list[float]:
    sampler = RateSampler(sample_fps)
    times = [start + i / source_fps for i in range(round(seconds * source_fps))]
    return [t for t in times if sampler.keep(t)]


def test_every_fifth_frame_of_25_fps_at_5_fps() -> None:
    kept = kept_times(25, 5, seconds=2)
    assert kept == pytest.approx([i * 0.2 for i in range(10)])


def test_ntsc_rate_at_5_fps_keeps_5_per_second() -> None:
    kept = kept_times(30000 / 1001, 5, seconds=60)
    assert len(kept) == 300
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert min(gaps) >= 0.2 - 1 / 29.97 - 1e-9


@pytest.mark.parametrize(("source_fps", "sample_fps"), [(10, 9), (25, 10), (30, 7), (12.5, 5)])
def test_kept_rate_is_the_sample_rate(source_fps: float, sample_fps: float) -> None:
    kept = kept_times(source_fps, sample_fps, seconds=20)
    assert len(kept) == pytest.approx(20 * sample_fps, abs=1)
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    # At most one frame per slot: never closer than a slot minus one source frame.
    assert min(gaps) >= 1 / sample_fps - 1 / source_fps - 1e-9


def test_slower_source_keeps_every_frame() -> None:
    assert len(kept_times(4, 5, seconds=5)) == 20


def test_timeline_jumping_back_starts_over() -> None:
    sampler = RateSampler(5)
    assert [sampler.keep(t) for t in (100.0, 100.1, 100.2)] == [True, False, True]
    assert sampler.keep(0.0)
    assert not sampler.keep(0.1)


def test_sample_fps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RateSampler(0)
