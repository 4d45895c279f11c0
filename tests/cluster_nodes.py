"""Settings for the nodes of a test cluster (issue 15): several ``aethex serve`` roles on one
PostgreSQL and one Redis, each with its own data dir, all reading one shared secret.

Not a test module. ``node_env`` is what every multi-node test starts its nodes with;
``shared_secret`` writes the file ``cluster.secret_key_file`` names (what an operator copies to
every node), once per directory, so every node of a test signs with the same key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "cluster_secret_key"


def shared_secret(directory: Path) -> dict[str, str]:
    """The setting naming ``directory``'s shared secret file, made (0600) if it is missing."""
    path = directory / SECRET_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return {"AETHEX_CLUSTER__SECRET_KEY_FILE": str(path)}


def node_env(
    base: dict[str, str],
    tmp: Path,
    name: str,
    role: str,
    pg: str,
    redis_url: str,
    advertise_url: str | None = None,
) -> dict[str, str]:
    """``base`` plus what makes a node of the cluster: its data dir under ``tmp``, the shared
    database, Redis and secret, its role, name and advertised URL."""
    return {
        **base,
        "AETHEX_DATA_DIR": str(tmp / name),
        "AETHEX_DATABASE_URL": pg,
        "AETHEX_CLUSTER__ROLE": role,
        "AETHEX_CLUSTER__NODE_ID": name,
        "AETHEX_CLUSTER__ADVERTISE_URL": advertise_url or f"http://{name}.test:8080",
        "AETHEX_CLUSTER__REDIS_URL": redis_url,
        **shared_secret(tmp),
    }
