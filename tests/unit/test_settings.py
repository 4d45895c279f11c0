"""Settings precedence and validation: defaults -> TOML -> environment, errors name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from mediaserver.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _flatten(obj: object, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value, prefix + f.name + "."))
        elif isinstance(value, tuple):
            out[prefix + f.name] = [dataclasses.asdict(v) for v in value]
        else:
            out[prefix + f.name] = value
    return out


def _flatten_toml(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten_toml(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def test_default_toml_documents_every_setting_with_its_default() -> None:
    documented = _flatten_toml(tomllib.loads((ROOT / "config/default.toml").read_text()))
    defaults = {k: (str(v) if isinstance(v, Path) else v) for k, v in _flatten(Settings()).items()}
    assert documented == defaults
    assert load_settings(ROOT / "config/default.toml", env={}) == Settings()


def test_precedence_defaults_toml_env(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("[rtmp]\nport = 2000\nidle_timeout = 12\n[http]\nport = 9000\n")
    s = load_settings(cfg, env={"AETHEX_RTMP_PORT": "3000", "AETHEX_RTMP__IDLE_TIMEOUT": "7.5"})
    assert s.rtmp.port == 3000  # environment beats file
    assert s.rtmp.idle_timeout == 7.5
    assert s.http.port == 9000  # file beats default
    assert s.rtmp.handshake_timeout == Settings().rtmp.handshake_timeout


def test_config_from_env_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text('data_dir = "/srv/aethex"\n')
    s = load_settings(
        None, env={"AETHEX_CONFIG": str(cfg), "AETHEX_DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    )
    assert s.data_dir == Path("/srv/aethex")
    assert s.effective_database_url == "sqlite+aiosqlite:///x.db"


def test_short_forms_always_work() -> None:
    s = load_settings(
        None,
        env={
            "AETHEX_DATA_DIR": "/d",
            "AETHEX_HTTP_HOST": "127.0.0.1",
            "AETHEX_HTTP_PORT": "81",
            "AETHEX_RTMP_HOST": "::1",
        },
    )
    assert (s.data_dir, s.http.host, s.http.port, s.rtmp.host) == (
        Path("/d"),
        "127.0.0.1",
        81,
        "::1",
    )
    assert s.effective_database_url.endswith("/d/aethex.db")


@pytest.mark.parametrize(
    "env, key",
    [
        ({"AETHEX_RTMP_PORT": "abc"}, "rtmp.port"),
        ({"AETHEX_RTMP_PORT": "70000"}, "rtmp.port"),
        ({"AETHEX_RTMP__IDLE_TIMEOUT": "-1"}, "rtmp.idle_timeout"),
        ({"AETHEX_RTMP__MAX_CHUNK_SIZE": "64"}, "rtmp.max_chunk_size"),
        ({"AETHEX_RTMP__NO_SUCH": "1"}, "rtmp.no_such"),
        ({"AETHEX_LOG__LEVEL": "loud"}, "log.level"),
        ({"AETHEX_LIVE__CONSUMER_QUEUE_SIZE": "0"}, "live.consumer_queue_size"),
        ({"AETHEX_HTTP__CORS_ORIGINS": "example.org"}, "http.cors_origins"),
        ({"AETHEX_HTTP__MAX_CONNECTIONS": "0"}, "http.max_connections"),
        ({"AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "-1"}, "http.max_connections_per_address"),
        ({"AETHEX_HLS__VIEWER_TIMEOUT": "0"}, "hls.viewer_timeout"),
        ({"AETHEX_HLS__MAX_VIEWER_SESSIONS": "-5"}, "hls.max_viewer_sessions"),
        ({"AETHEX_CLUSTER__ROLE": "edge"}, "cluster.role"),
        ({"AETHEX_CLUSTER__ROLE": "origin"}, "cluster.redis_url"),
        (
            {"AETHEX_CLUSTER__ROLE": "web", "AETHEX_CLUSTER__REDIS_URL": "redis://127.0.0.1/0"},
            "database_url",
        ),
        (
            {
                "AETHEX_CLUSTER__ROLE": "origin",
                "AETHEX_CLUSTER__REDIS_URL": "redis://127.0.0.1/0",
                "AETHEX_DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1/aethex",
            },
            "cluster.secret_key_file",
        ),
        ({"AETHEX_CLUSTER__SECRET_KEY_FILE": "secret"}, "cluster.secret_key_file"),
        ({"AETHEX_CLUSTER__REDIS_URL": "localhost:6379"}, "cluster.redis_url"),
        ({"AETHEX_CLUSTER__NODE_ID": "a b"}, "cluster.node_id"),
        ({"AETHEX_CLUSTER__RENEW_INTERVAL": "4"}, "cluster.renew_interval"),
        ({"AETHEX_OBJECTS__BACKEND": "s3"}, "objects.bucket"),
        ({"AETHEX_OBJECTS__BACKEND": "ftp"}, "objects.backend"),
        ({"AETHEX_OBJECTS__ENDPOINT_URL": "seaweed:8333"}, "objects.endpoint_url"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, env=env)
    assert info.value.key == key
    assert key in str(info.value)


def test_bad_toml_types_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[rtmp]\nport = "1935"\n')
    with pytest.raises(SettingsError, match="rtmp.port"):
        load_settings(cfg, env={})
    cfg.write_text("rtmp = 5\n")
    with pytest.raises(SettingsError, match="'rtmp'"):
        load_settings(cfg, env={})
    cfg.write_text("[rtmp\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(cfg, env={})
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_ladder_from_toml_and_env(tmp_path: Path) -> None:
    cfg = tmp_path / "l.toml"
    cfg.write_text(
        '[[transcode.ladder]]\nname = "720p"\nheight = 720\nfps = 30.0\nvideo_kbps = 2500\n'
    )
    s = load_settings(cfg, env={})
    assert [(r.name, r.height, r.fps, r.video_kbps) for r in s.transcode.ladder] == [
        ("720p", 720, 30.0, 2500)
    ]
    s = load_settings(
        None,
        env={
            "AETHEX_TRANSCODE__LADDER": '[{"name": "360p", "height": 360, "fps": 25, '
            '"video_kbps": 800}]'
        },
    )
    assert s.transcode.ladder[0].fps == 25.0


@pytest.mark.parametrize(
    "env, key",
    [
        ({"AETHEX_TRANSCODE__LADDER": "[]"}, "transcode.ladder"),
        ({"AETHEX_TRANSCODE__LADDER": "not json"}, "transcode.ladder"),
        (
            {
                "AETHEX_TRANSCODE__LADDER": '[{"name": "a", "height": 721, "fps": 30, '
                '"video_kbps": 900}]'
            },
            "transcode.ladder[0].height",
        ),
        (
            {"AETHEX_TRANSCODE__LADDER": '[{"height": 720, "fps": 30, "video_kbps": 900}]'},
            "transcode.ladder[0].name",
        ),
        (
            {
                "AETHEX_TRANSCODE__LADDER": '[{"name": "a/b", "height": 720, "fps": 30, '
                '"video_kbps": 900}]'
            },
            "transcode.ladder[0].name",
        ),
        (
            {
                "AETHEX_TRANSCODE__LADDER": '[{"name": "a", "height": 720, "fps": 30, '
                '"video_kbps": 900}, {"name": "a", "height": 480, "fps": 30, "video_kbps": 500}]'
            },
            "transcode.ladder[1].name",
        ),
        ({"AETHEX_TRANSCODE__PASSTHROUGH": "sometimes"}, "transcode.passthrough"),
        ({"AETHEX_TRANSCODE__PRESET": "warp"}, "transcode.preset"),
        ({"AETHEX_HLS__PART_DURATION": "3"}, "hls.part_duration"),
        ({"AETHEX_HLS__LIVE_SEGMENTS": "2"}, "hls.live_segments"),
        ({"AETHEX_RECORDING__ENABLED": "maybe"}, "recording.enabled"),
    ],
)
def test_bad_transcode_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, env=env)
    assert info.value.key == key, str(info.value)
