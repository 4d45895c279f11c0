"""Ladder planning: never upscale, even sizes with the source's aspect, fps caps, passthrough."""

from __future__ import annotations

import pytest

from transcode.ladder import (
    DEFAULT_LADDER,
    RenditionPlan,
    Rung,
    plan_ladder,
)


def sizes(plans: list[RenditionPlan]) -> list[tuple[str, int, int]]:
    return [(p.name, p.width, p.height) for p in plans]


def test_1080p_source_gets_three_rungs_highest_first() -> None:
    plans = plan_ladder(1920, 1080, 30.0, "avc1", DEFAULT_LADDER, "never")
    assert sizes(plans) == [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 854, 480)]
    assert [p.video_kbps for p in plans] == [6000, 3000, 1200]
    assert [(p.maxrate_kbps, p.bufsize_kbits) for p in plans] == [
        (6600, 12000),
        (3300, 6000),
        (1320, 2400),
    ]
    assert not any(p.passthrough for p in plans)
    assert all(p.fps == 30.0 for p in plans)


def test_720p_source_never_upscaled() -> None:
    plans = plan_ladder(1280, 720, 30.0, "hvc1", DEFAULT_LADDER, "auto")
    assert sizes(plans) == [("720p", 1280, 720), ("480p", 854, 480)]


def test_source_between_rungs_keeps_only_smaller_rungs() -> None:
    assert sizes(plan_ladder(1776, 1000, 30.0, "hvc1")) == [("720p", 1278, 720), ("480p", 852, 480)]


def test_4_3_and_odd_sizes_give_even_widths_with_the_aspect_kept() -> None:
    plans = plan_ladder(1440, 1080, 30.0, "hvc1")
    assert sizes(plans) == [("1080p", 1440, 1080), ("720p", 960, 720), ("480p", 640, 480)]
    odd = plan_ladder(1279, 721, 30.0, "hvc1")
    assert sizes(odd) == [("720p", 1278, 720), ("480p", 852, 480)]
    for p in odd:
        assert p.width % 2 == 0 and p.height % 2 == 0
        assert abs(p.width / p.height - 1279 / 721) < 0.01


def test_source_smaller_than_every_rung_gets_one_rung_at_its_own_size() -> None:
    plans = plan_ladder(641, 361, 25.0, "hvc1")
    assert sizes(plans) == [("360p", 640, 360)]
    assert plans[0].fps == 25.0
    assert 100 <= plans[0].video_kbps < 1200  # the smallest rung's bitrate scaled by area


def test_fps_never_above_the_source_and_unknown_fps_keeps_the_rung() -> None:
    assert [p.fps for p in plan_ladder(1920, 1080, 24.0, "hvc1")] == [24.0, 24.0, 24.0]
    assert [p.fps for p in plan_ladder(1920, 1080, 60.0, "hvc1")] == [30.0, 30.0, 30.0]
    high = [Rung("hfr", 720, 60.0, 4500), Rung("sd", 480, 30.0, 1200)]
    assert [p.fps for p in plan_ladder(1280, 720, 50.0, "avc1", high, "never")] == [50.0, 30.0]
    assert [p.fps for p in plan_ladder(1280, 720, 0.0, "avc1", high, "never")] == [60.0, 30.0]


def test_passthrough_auto_copies_a_fitting_h264_top_rung() -> None:
    plans = plan_ladder(1920, 1080, 30.0, "avc1", DEFAULT_LADDER, "auto")
    assert [p.passthrough for p in plans] == [True, False, False]
    assert (plans[0].width, plans[0].height, plans[0].fps) == (1920, 1080, 30.0)
    # 30.3 fps (millisecond timestamps) still fits a 30 fps rung
    assert plan_ladder(1280, 720, 30.3, "avc1", DEFAULT_LADDER, "auto")[0].passthrough


def test_passthrough_auto_does_not_copy_what_does_not_fit() -> None:
    assert not any(p.passthrough for p in plan_ladder(1920, 1080, 60.0, "avc1"))  # fps
    assert not any(p.passthrough for p in plan_ladder(2560, 1440, 30.0, "avc1"))  # height
    # a 1000-line source is taller than its top rung (720p)
    assert not any(p.passthrough for p in plan_ladder(1776, 1000, 30.0, "avc1"))


def test_passthrough_always_copies_any_h264_top_rung_at_source_size() -> None:
    plans = plan_ladder(2560, 1440, 60.0, "avc1", DEFAULT_LADDER, "always")
    assert plans[0].passthrough and (plans[0].width, plans[0].height, plans[0].fps) == (
        2560,
        1440,
        60.0,
    )
    assert [p.passthrough for p in plans[1:]] == [False, False]


@pytest.mark.parametrize("codec", ["hvc1", "av01", "vp09"])
@pytest.mark.parametrize("mode", ["auto", "always"])
def test_other_codecs_are_never_copied(codec: str, mode: str) -> None:
    plans = plan_ladder(1920, 1080, 30.0, codec, DEFAULT_LADDER, mode)  # type: ignore[arg-type]
    assert not any(p.passthrough for p in plans)


def test_passthrough_never_and_bad_mode() -> None:
    assert not any(
        p.passthrough for p in plan_ladder(1920, 1080, 30.0, "avc1", DEFAULT_LADDER, "never")
    )
    with pytest.raises(ValueError, match="passthrough"):
        plan_ladder(1920, 1080, 30.0, "avc1", DEFAULT_LADDER, "sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source size"):
        plan_ladder(0, 1080, 30.0, "avc1")
