"""Schemathesis against ``/api/openapi.json`` of a real server, as a logged-in admin.

Every operation of the document gets generated requests, valid and invalid (the examples,
coverage, fuzzing and stateful phases), and must never answer 5xx nor a status code its
description leaves out; the server must log no error and no traceback meanwhile. The run is
bounded (``MAX_EXAMPLES`` per operation) and derandomized, so a failure reproduces: schemathesis
prints a curl command for each. Operations that end the fuzzer's own credential (logout, token
revocation) run last, on their own, so the rest are not all answered 401.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

from tests.chat_support import auth, base_url, make_user
from tests.conftest import running_server

if TYPE_CHECKING:
    from mediaserver.app import Server

pytestmark = pytest.mark.integration

# Per operation and phase: about a minute for the whole document (some 200 operations) on a
# quiet 2-core machine (15 took 90 s once issue 16 had added its operations).
MAX_EXAMPLES = 10
CHECKS = "not_a_server_error,status_code_conformance"
# Operations that can end the fuzzer's credential: logging out, revoking its token, and (once
# it has promoted a user it registered) disabling or demoting itself. Each runs last, alone,
# with a fresh token.
CREDENTIAL_ENDERS = (
    "/api/auth/logout",
    "/api/auth/tokens/{token_id}",
    "/api/admin/users/{user_id}",
)


@pytest.fixture
def fuzz_env(settings_env: dict[str, str]) -> dict[str, str]:
    # Every refused login waits 0.25-1 s by default (a brute-force brake): too slow for
    # thousands of generated logins, and the wait is not what is under test here.
    return {
        **settings_env,
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MIN": "0.001",
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MAX": "0.002",
    }


async def seed(server: Server, base: str) -> None:
    """One of each object the paths name (channel, archived stream, message, report, another
    user), so generated ids such as 1 reach the handlers' logic instead of a 404."""
    from storage import queries
    from storage.models import StreamStatus

    _, viewer = await make_user(server, "viewer")
    async with server.db.session() as db:
        channel = await queries.create_channel(db, "fuzzer", "fuzz-live")
        stream = await queries.start_stream(db, channel.id, datetime.now(UTC))
        await queries.end_stream(db, stream.id, datetime.now(UTC), StreamStatus.ARCHIVED)
        await db.commit()
    async with aiohttp.ClientSession(base, headers=auth(viewer)) as http:
        async with http.post(
            "/api/messages", json={"channel": "fuzz-live", "content": "hello"}
        ) as r:
            assert r.status == 201, await r.text()
            message_id = (await r.json())["message"]["id"]
        async with http.post(
            "/api/reports", json={"message_id": message_id, "reason": "spam"}
        ) as r:
            assert r.status == 201, await r.text()


async def schemathesis(base: str, token: str, cwd: Path, *options: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
        *options,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def test_no_operation_answers_5xx_or_an_undocumented_status(
    fuzz_env, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO)
    async with running_server(fuzz_env) as server:
        from storage import queries

        _, token = await make_user(server, "fuzzer", admin=True)
        base = base_url(server)
        await seed(server, base)
        skip = [opt for path in CREDENTIAL_ENDERS for opt in ("--exclude-path", path)]
        code, out = await schemathesis(base, token, tmp_path, *skip)
        assert code == 0, out
        for path in CREDENTIAL_ENDERS:
            async with server.db.session() as db:
                token = await queries.create_api_token(db, "fuzzer")
                await db.commit()
            code, out = await schemathesis(base, token, tmp_path, "--include-path", path)
            assert code == 0, out
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, "\n".join(f"{r.name}: {r.getMessage()}" for r in bad)
