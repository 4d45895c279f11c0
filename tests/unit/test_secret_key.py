"""The server secret in the data dir: made once, private, the same for every process."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mediaserver.settings import SettingsError
from webapp.identity import load_secret_key


def test_made_once_private_and_kept(tmp_path: Path) -> None:
    key = load_secret_key(tmp_path)
    path = tmp_path / "secret_key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(tmp_path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]  # no temporary left


def test_processes_starting_together_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_secret_key(tmp_path), range(32)))
    assert len(keys) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


@pytest.mark.parametrize("content", ["", "not hex at all", "ab" * 16 + "\n"])
def test_a_damaged_key_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(SettingsError, match="data_dir.*secret_key.*remove it"):
        load_secret_key(tmp_path)
