"""The transcoder's options: one set of rules, checked at settings load under the setting's key
and again for values given by hand (tests, benchmarks)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mediaserver.settings import Settings, SettingsError, load_settings, transcode_options
from transcode.options import OptionError, TranscodeOptions


@pytest.mark.parametrize(
    "env, key",
    [
        ({"AETHEX_TRANSCODE__AUDIO_KBPS": "4"}, "transcode.audio_kbps"),
        ({"AETHEX_TRANSCODE__RUNG_QUEUE_SIZE": "0"}, "transcode.rung_queue_size"),
        ({"AETHEX_TRANSCODE__THUMBNAIL_INTERVAL": "0"}, "transcode.thumbnail_interval"),
        ({"AETHEX_TRANSCODE__THUMBNAIL_WIDTH": "17"}, "transcode.thumbnail_width"),
        ({"AETHEX_TRANSCODE__X264_PARAMS": "keyint=1;rm -rf"}, "transcode.x264_params"),
        ({"AETHEX_HLS__SEGMENT_DURATION": "0"}, "hls.segment_duration"),
    ],
)
def test_every_transcoder_rule_is_checked_at_load_under_the_settings_key(
    env: dict[str, str], key: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, env=env)
    assert info.value.key == key, str(info.value)


def test_the_servers_options_come_from_settings() -> None:
    s = load_settings(
        None,
        env={"AETHEX_TRANSCODE__PASSTHROUGH": "never", "AETHEX_TRANSCODE__RUNG_QUEUE_SIZE": "7"},
    )
    options = transcode_options(s)
    assert options.passthrough == "never" and options.queue_size == 7
    assert options.segment_duration == s.hls.segment_duration
    assert options.x264_params == s.transcode.x264_params
    assert transcode_options(Settings()) == transcode_options(load_settings(None, env={}))


@pytest.mark.parametrize(
    "field, value",
    [
        ("passthrough", "sometimes"),
        ("audio_kbps", 4),
        ("queue_size", 0),
        ("segment_duration", 0),
        ("thumbnail_width", 15),
        ("preset", "warp"),
    ],
)
def test_values_given_by_hand_meet_the_same_rules(field: str, value: object) -> None:
    with pytest.raises(OptionError) as info:
        replace(TranscodeOptions(), **{field: value})
    assert info.value.option == field
