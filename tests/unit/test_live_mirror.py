"""LiveRegistry.mirror (issue 15): a stream another node ingests is found by ``get`` (pages and
the API see it live) but never iterated, counted or announced to the listeners (its origin runs
those), and asking it to stop calls the hook that reaches its origin."""

from __future__ import annotations

from datetime import UTC, datetime

from mediaserver.live import LiveRegistry

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_mirrored_stream_is_found_but_not_ours() -> None:
    registry = LiveRegistry()
    heard: list[str] = []
    registry.on_started(lambda s: heard.append(f"start {s.slug}"))
    registry.on_ended(lambda s: heard.append(f"end {s.slug}"))
    asked: list[str] = []
    remote = registry.mirror(
        channel_id=1, slug="far", stream_id=10, started_at=NOW, disconnect=asked.append
    )
    assert registry.get("far") is remote and remote.remote and not remote.ended
    assert list(registry) == [] and len(registry) == 0 and registry.remote() == [remote]
    assert remote.stop_publisher("ended") is True and asked == ["ended"]
    # A newer stream of the channel replaces it; unmirror ends it; no listener heard any.
    newer = registry.mirror(channel_id=1, slug="far", stream_id=11, started_at=NOW)
    assert remote.ended and registry.get("far") is newer
    registry.unmirror("far")
    assert newer.ended and registry.get("far") is None and registry.remote() == []
    assert heard == []


def test_a_local_stream_wins_over_a_mirror() -> None:
    registry = LiveRegistry()
    mirrored = registry.mirror(channel_id=2, slug="both", stream_id=20, started_at=NOW)
    local = registry.start(channel_id=2, slug="both", stream_id=21, started_at=NOW)
    assert registry.get("both") is local and not local.remote
    assert list(registry) == [local]
    # The channel came here (an origin mirrors the others' streams too): the other origin's
    # copy is dropped, so once this one ends the channel is not shown live on a stale copy.
    assert mirrored.ended and registry.remote() == []
    registry.end(local)
    assert registry.get("both") is None
