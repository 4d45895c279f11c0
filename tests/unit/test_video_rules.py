"""The video library's pure rules (issue 13): who may watch, what retention removes, what a
video edit accepts, and the signed VOD links of private videos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import videos
from storage.errors import ValidationError
from storage.models import Channel, Stream
from webapp.stream_links import check_vod_grant, stream_ref, vod_grant

OWNER, OTHER = 7, 8
PUBLIC_ID = "A" * 22


def video(visibility: str, *, listed_channel: bool = True, deleted: bool = False):
    channel = Channel(id=1, owner_id=OWNER, slug="c", name="C", is_public=listed_channel)
    stream = Stream(id=5, public_id=PUBLIC_ID, channel_id=1, title="t", visibility=visibility)
    stream.deleted_at = datetime.now(UTC) if deleted else None
    return stream, channel


@pytest.mark.parametrize("listed_channel", [True, False])
@pytest.mark.parametrize("visibility", ["public", "unlisted", "private", "bogus"])
@pytest.mark.parametrize("deleted", [False, True])
def test_can_view(visibility: str, listed_channel: bool, deleted: bool) -> None:
    stream, channel = video(visibility, listed_channel=listed_channel, deleted=deleted)
    for viewer, admin in ((OWNER, False), (None, True), (OTHER, True)):
        for by_public_id in (False, True):
            assert videos.can_view(stream, channel, viewer, admin, by_public_id=by_public_id) == (
                not deleted
            )
    for viewer in (None, OTHER):
        by_id = videos.can_view(stream, channel, viewer, False)
        by_link = videos.can_view(stream, channel, viewer, False, by_public_id=True)
        assert by_id == (not deleted and visibility == "public" and listed_channel)
        assert by_link == (not deleted and visibility in ("public", "unlisted"))
    # The URL the site uses names a listed channel's public video by id, others by public id.
    expected = "5" if visibility == "public" and listed_channel else PUBLIC_ID
    assert stream_ref(stream, channel) == expected


NOW = datetime(2026, 6, 1, tzinfo=UTC)


def kept(n: int, days_ago: float, size: int = 0, pinned: bool = False) -> videos.KeptVideo:
    return videos.KeptVideo(n, 1, NOW - timedelta(days=days_ago), size, pinned)


def test_retention_by_age_and_size() -> None:
    gb = videos.GB
    items = [
        kept(1, 50),
        kept(2, 40, pinned=True),
        kept(3, 20, size=gb),
        kept(4, 10, size=gb),
        kept(5, 5, size=gb),
        kept(6, 60, size=10 * gb, pinned=True),
    ]
    assert videos.plan_retention(items, videos.Limits(0, 0), NOW) == []
    by_age = videos.plan_retention(items, videos.Limits(30, 0), NOW)
    assert [(v.stream_id, why) for v, why in by_age] == [(1, "older than 30 days")]
    # 2 GB: the oldest unpinned of the rest go until the unpinned total fits; the pinned
    # 10 GB neither goes nor counts.
    by_size = videos.plan_retention(items, videos.Limits(0, 2.0), NOW)
    assert [v.stream_id for v, _ in by_size] == [1, 3]  # 1 is 0 bytes but older: goes first
    both = videos.plan_retention(items, videos.Limits(15, 1.5), NOW)
    assert [v.stream_id for v, _ in both] == [1, 3, 4]
    # An exact fit is within the limit.
    assert videos.plan_retention(items, videos.Limits(0, 3.0), NOW) == []


def test_channel_limits_replace_the_servers_one_by_one() -> None:
    default = videos.Limits(30, 100.0)
    channel = Channel(retention_days=None, retention_max_gb=None)
    assert videos.effective_limits(channel, default) == default
    channel = Channel(retention_days=0, retention_max_gb=None)
    assert videos.effective_limits(channel, default) == videos.Limits(0, 100.0)
    channel = Channel(retention_days=None, retention_max_gb=2.5)
    assert videos.effective_limits(channel, default) == videos.Limits(30, 2.5)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"title": ""},
        {"title": "a\nb"},
        {"title": "x" * 141},
        {"description": 3},
        {"visibility": "PUBLIC"},
        {"pinned": 1},
        {"views": 100},
    ],
)
def test_bad_video_edits(body: object) -> None:
    with pytest.raises(ValidationError):
        videos.clean_video_changes(body)


@pytest.mark.parametrize(
    "body",
    [
        {"retention_days": -1},
        {"retention_days": 1.5},
        {"retention_days": True},
        {"retention_max_gb": float("nan")},
        {"retention_max_gb": 1e12},
        {"allow_downloads": "yes"},
        {"stream_key": "x"},
    ],
)
def test_bad_channel_video_settings(body: object) -> None:
    with pytest.raises(ValidationError):
        videos.clean_channel_video_settings(body)


def test_good_edits_are_cleaned() -> None:
    assert videos.clean_video_changes(
        {"title": "  Hi  ", "description": None, "visibility": "private", "pinned": True}
    ) == {"title": "Hi", "description": "", "visibility": "private", "pinned": True}
    assert videos.clean_channel_video_settings(
        {"retention_days": 0, "retention_max_gb": 2, "allow_vod_clips": True}
    ) == {"retention_days": 0, "retention_max_gb": 2.0, "allow_vod_clips": True}


def test_vod_grants() -> None:
    secret, other = b"s" * 32, b"o" * 32
    stream, _ = video("private")
    grant = vod_grant(secret, stream, 2_000)
    assert check_vod_grant(secret, grant, 1_999.0) == (PUBLIC_ID, 2_000)
    assert check_vod_grant(secret, grant, 2_000.0) is None  # over
    assert check_vod_grant(other, grant, 1_000.0) is None  # another server's secret
    later = grant.replace("~7d0~", "~ffff~")  # a later end, same MAC
    assert later != grant and check_vod_grant(secret, later, 1_000.0) is None
    assert check_vod_grant(secret, PUBLIC_ID, 1_000.0) is None
    assert check_vod_grant(secret, grant + "0", 1_000.0) is None
