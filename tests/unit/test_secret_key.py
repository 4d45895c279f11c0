"""The server secret in the data dir: made once, private, the same for every process; or the
cluster's, read from the file the operator put on every node (never made by a node)."""

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


def test_a_cluster_reads_the_shared_file_and_never_makes_it(tmp_path: Path) -> None:
    shared = tmp_path / "cluster_secret"
    with pytest.raises(SettingsError, match=r"cluster\.secret_key_file.*cannot read.*openssl"):
        load_secret_key(tmp_path / "data", str(shared))
    assert not shared.exists() and not (tmp_path / "data").exists()
    shared.write_text("0123456789abcdef" * 4 + "\n")
    assert load_secret_key(tmp_path / "data", str(shared)) == bytes.fromhex("0123456789abcdef" * 4)
    assert not (tmp_path / "data").exists()  # the data dir's own secret is not made
    shared.write_text("short\n")
    with pytest.raises(SettingsError, match=r"cluster\.secret_key_file.*64 hex digits"):
        load_secret_key(tmp_path / "data", str(shared))
