"""The ``aethex`` command line as a user runs it, on a fresh data dir: its ``main(argv)`` with
the environment, standard input and outputs a process would have, and a real process where
that is what is tested (usage and help, ``serve``, a password piped in). In-process because a
process per command spent a second on imports each, and this file runs some sixty commands."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.lib.cli_inprocess import run_cli
from storage.db import head_revision
from storage.passwords import is_usable_password_hash, verify_password

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    clean["AETHEX_DATA_DIR"] = str(tmp_path / "data")
    clean["AETHEX_RTMP__PUBLIC_URL"] = "rtmp://stream.example.org/live"
    clean["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    return clean


def aethex(
    env: dict[str, str],
    *args: str,
    stdin: str | None = None,
    extra_env: dict[str, str] | None = None,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    full = {**env, **(extra_env or {})}
    if process:
        return subprocess.run(
            [sys.executable, "-m", "mediaserver", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env=full,
        )
    status, out, err = run_cli(full, args, stdin)
    return subprocess.CompletedProcess(list(args), status, out, err)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def failed(result: subprocess.CompletedProcess[str], status: int) -> str:
    """Assert a clean failure: the status, one line on stderr, no traceback; return the line."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aethex: error: ")
    return lines[0]


def db_rows(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "data" / "aethex.db") as conn:
        return conn.execute(sql).fetchall()


def test_db_upgrade_on_fresh_data_dir_and_again(env: dict[str, str], tmp_path: Path) -> None:
    first = ok(aethex(env, "db", "upgrade"))
    assert head_revision() in first.stdout
    ok(aethex(env, "db", "upgrade"))
    assert db_rows(tmp_path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert db_rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]


def test_user_create_with_password_stdin_first_user_is_admin(
    env: dict[str, str], tmp_path: Path
) -> None:
    # No `db upgrade` first: every command migrates a fresh data dir itself.
    out = ok(
        aethex(
            env,
            "user",
            "create",
            "alice",
            "--email",
            "alice@example.org",
            "--password-stdin",
            stdin="correct horse battery\n",
            process=True,  # a real pipe on standard input
        )
    )
    assert "alice" in out.stdout and "admin" in out.stdout
    ok(aethex(env, "user", "create", "bob", "--email", "bob@example.org"))
    ok(aethex(env, "user", "create", "carol", "--email", "carol@example.org", "--admin"))
    rows = {
        name: (admin, h)
        for name, admin, h in db_rows(
            tmp_path, "SELECT username, is_admin, password_hash FROM users"
        )
    }
    assert rows["alice"][0] == 1 and rows["bob"][0] == 0 and rows["carol"][0] == 1
    assert verify_password(rows["alice"][1], "correct horse battery")
    assert not verify_password(rows["alice"][1], "correct horse battery\n")
    assert not is_usable_password_hash(rows["bob"][1])
    assert db_rows(tmp_path, "SELECT count(*) FROM profiles") == [(3,)]


def test_user_create_errors(env: dict[str, str]) -> None:
    ok(aethex(env, "user", "create", "alice", "--email", "alice@example.org"))
    line = failed(aethex(env, "user", "create", "alice", "--email", "x@example.org"), 1)
    assert "username 'alice' is already taken" in line
    line = failed(aethex(env, "user", "create", "other", "--email", "ALICE@example.org"), 1)
    assert "already registered" in line
    line = failed(aethex(env, "user", "create", "Bad Name", "--email", "b@example.org"), 2)
    assert "invalid username" in line
    line = failed(aethex(env, "user", "create", "dave", "--email", "not-an-email"), 2)
    assert "invalid email" in line
    line = failed(
        aethex(
            env,
            "user",
            "create",
            "erin",
            "--email",
            "erin@example.org",
            "--password-stdin",
            stdin="",
        ),
        2,
    )
    assert "no password" in line
    line = failed(
        aethex(
            env,
            "user",
            "create",
            "erin",
            "--email",
            "erin@example.org",
            "--password-stdin",
            stdin="short\n",
        ),
        2,
    )
    assert "password must be" in line
    # argparse's own usage errors are status 2 too.
    missing = aethex(env, "user", "create", "frank")
    assert missing.returncode == 2 and "--email" in missing.stderr


def test_channel_create_json(env: dict[str, str], tmp_path: Path) -> None:
    ok(aethex(env, "user", "create", "alice", "--email", "alice@example.org"))
    result = ok(
        aethex(
            env,
            "channel",
            "create",
            "--owner",
            "alice",
            "--slug",
            "alice-live",
            "--title",
            "Alice Plays",
            "--json",
        )
    )
    info = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert info["slug"] == "alice-live"
    assert info["title"] == "Alice Plays"
    assert info["owner"] == "alice"
    assert isinstance(info["id"], int)
    assert info["stream_key"].startswith("live_") and len(info["stream_key"]) == 45
    assert info["rtmp_url"] == "rtmp://stream.example.org/live"
    assert info["publish_url"] == f"rtmp://stream.example.org/live/{info['stream_key']}"
    assert db_rows(tmp_path, "SELECT slug, stream_key FROM channels") == [
        ("alice-live", info["stream_key"])
    ]


def test_channel_create_json_default_rtmp_url_uses_port(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "AETHEX_RTMP__PUBLIC_URL"}
    ok(aethex(env, "user", "create", "alice", "--email", "alice@example.org"))
    info = json.loads(
        ok(
            aethex(
                env,
                "channel",
                "create",
                "--owner",
                "alice",
                "--slug",
                "chan",
                "--json",
                extra_env={"AETHEX_RTMP_PORT": "1940", "AETHEX_RTMP_HOST": "10.1.2.3"},
            )
        ).stdout
    )
    assert info["rtmp_url"] == "rtmp://10.1.2.3:1940/live"


def test_channel_create_text_shows_obs_settings(env: dict[str, str]) -> None:
    ok(aethex(env, "user", "create", "alice", "--email", "alice@example.org"))
    out = ok(aethex(env, "channel", "create", "--owner", "alice", "--slug", "alice-live")).stdout
    assert "Server:     rtmp://stream.example.org/live" in out
    key_line = next(line for line in out.splitlines() if "Stream Key:" in line)
    assert key_line.split("Stream Key:")[1].strip().startswith("live_")


def test_channel_create_errors(env: dict[str, str]) -> None:
    ok(aethex(env, "user", "create", "alice", "--email", "alice@example.org"))
    ok(aethex(env, "channel", "create", "--owner", "alice", "--slug", "taken", "--json"))
    dup = aethex(env, "channel", "create", "--owner", "alice", "--slug", "taken", "--json")
    line = failed(dup, 1)
    assert "slug 'taken' is already taken" in line
    assert dup.stdout == ""
    line = failed(aethex(env, "channel", "create", "--owner", "nobody", "--slug", "x-1"), 1)
    assert "no user named 'nobody'" in line
    line = failed(aethex(env, "channel", "create", "--owner", "alice", "--slug", "Bad_Slug"), 2)
    assert "invalid channel slug" in line


def test_token_create(env: dict[str, str], tmp_path: Path) -> None:
    ok(aethex(env, "user", "create", "alice", "--email", "alice@example.org"))
    data = json.loads(ok(aethex(env, "token", "create", "alice", "--json")).stdout)
    assert data["username"] == "alice" and data["token"].startswith("aethex_")
    plain = ok(aethex(env, "token", "create", "alice"))
    token = plain.stdout.strip()
    assert token.startswith("aethex_") and token != data["token"]
    assert "Bearer" in plain.stderr
    stored = {h for (h,) in db_rows(tmp_path, "SELECT token_hash FROM api_tokens")}
    assert len(stored) == 2 and data["token"] not in stored and token not in stored
    line = failed(aethex(env, "token", "create", "ghost"), 1)
    assert "no user named 'ghost'" in line


def test_bad_setting_env_names_the_key(env: dict[str, str]) -> None:
    for args in (
        ["db", "upgrade"],
        ["token", "create", "alice"],
        ["user", "create", "alice", "--email", "a@example.org"],
    ):
        line = failed(aethex(env, *args, extra_env={"AETHEX_RTMP_PORT": "abc"}), 2)
        assert "rtmp.port" in line and "abc" in line


def test_config_file_before_or_after_subcommand(env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in env.items() if k != "AETHEX_RTMP__PUBLIC_URL"}
    config = tmp_path / "aethex.toml"
    config.write_text('[rtmp]\npublic_url = "rtmp://from-config.example/live"\n')
    ok(
        aethex(
            env, "--config", str(config), "user", "create", "alice", "--email", "alice@example.org"
        )
    )
    for args in (
        [
            "--config",
            str(config),
            "channel",
            "create",
            "--owner",
            "alice",
            "--slug",
            "one",
            "--json",
        ],
        [
            "channel",
            "create",
            "--owner",
            "alice",
            "--slug",
            "two",
            "--json",
            "--config",
            str(config),
        ],
    ):
        info = json.loads(ok(aethex(env, *args)).stdout)
        assert info["rtmp_url"] == "rtmp://from-config.example/live"
    via_env = ok(
        aethex(
            env,
            "channel",
            "create",
            "--owner",
            "alice",
            "--slug",
            "three",
            "--json",
            extra_env={"AETHEX_CONFIG": str(config)},
        )
    )
    assert json.loads(via_env.stdout)["rtmp_url"] == "rtmp://from-config.example/live"
    line = failed(aethex(env, "db", "upgrade", "--config", str(tmp_path / "missing.toml")), 2)
    assert "missing.toml" in line
    config.write_text("[rtmp]\nport = 99999\n")
    line = failed(aethex(env, "--config", str(config), "db", "upgrade"), 2)
    assert "rtmp.port" in line


def test_unreachable_database_is_one_line_without_password(env: dict[str, str]) -> None:
    line = failed(
        aethex(
            env,
            "db",
            "upgrade",
            extra_env={
                "AETHEX_DATABASE_URL": "postgresql+asyncpg://nobody:s3cr3t@127.0.0.1:1/none"
            },
        ),
        1,
    )
    assert "cannot migrate database postgresql+asyncpg://nobody:***@127.0.0.1:1/none" in line
    assert "s3cr3t" not in line
    line = failed(aethex(env, "db", "upgrade", extra_env={"AETHEX_DATABASE_URL": "mysql://x/y"}), 2)
    assert "driver not installed" in line


def test_serve_with_bad_settings_fails_before_starting(env: dict[str, str]) -> None:
    line = failed(aethex(env, "serve", extra_env={"AETHEX_RTMP_PORT": "abc"}, process=True), 2)
    assert "rtmp.port" in line
    line = failed(aethex(env, "serve", extra_env={"AETHEX_HTTP_PORT": "70000"}), 2)
    assert "http.port" in line


def test_no_command_prints_usage(env: dict[str, str]) -> None:
    result = aethex(env, process=True)
    assert result.returncode == 2 and "usage: aethex" in result.stderr
    help_ = aethex(env, "--help", process=True)
    assert help_.returncode == 0
    for command in ("serve", "db", "user", "channel", "token"):
        assert command in help_.stdout


def test_channel_ladder_show_set_and_reset(env: dict[str, str]) -> None:
    ok(aethex(env, "user", "create", "lena", "--email", "lena@example.test"))
    ok(aethex(env, "channel", "create", "--owner", "lena", "--slug", "lena"))
    shown = json.loads(ok(aethex(env, "channel", "ladder", "lena")).stdout)
    assert shown["source"] == "server default" and len(shown["ladder"]) == 3
    rung = '[{"name": "360p", "height": 360, "fps": 30, "video_kbps": 800}]'
    set_ = json.loads(ok(aethex(env, "channel", "ladder", "lena", "--set", rung)).stdout)
    assert set_["source"] == "channel" and set_["ladder"][0]["name"] == "360p"
    again = json.loads(ok(aethex(env, "channel", "ladder", "lena")).stdout)
    assert again == set_
    bad = '[{"name": "x", "height": 7, "fps": 30, "video_kbps": 800}]'
    assert "--set[0].height" in failed(aethex(env, "channel", "ladder", "lena", "--set", bad), 2)
    reset = json.loads(ok(aethex(env, "channel", "ladder", "lena", "--default")).stdout)
    assert reset["source"] == "server default"
    assert "nope" in failed(aethex(env, "channel", "ladder", "nope"), 1)
