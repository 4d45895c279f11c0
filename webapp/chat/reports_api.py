"""Reports through the JSON API: anyone logged in reports a message or a user to a channel's
moderators; the channel's owner, moderators and admins list the reports and resolve or dismiss
them (the report queue page, ``/dashboard/reports``, acts through these).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import chat as chat_store
from storage import reports as report_store
from storage.models import ReportStatus, User

from ..errors import ApiError
from ..identity import require_user
from ..keys import DB_KEY
from ..openapi import error_response, json_body
from ..parsing import field, path_id, read_json
from .api_context import DONE, NOT_MODERATOR, UNAUTHENTICATED, channel_state, json_reply


async def create_report(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    message_id = field(body, "message_id", int, required=False)
    target_id = field(body, "user_id", int, required=False)
    slug = field(body, "channel", str, required=False)
    reason = field(body, "reason", str)
    details = field(body, "details", str, required=False, default="")
    channel_id = None
    async with request.app[DB_KEY].session() as session:
        if message_id is not None:
            msg = await chat_store.get_message(session, message_id)
            if msg is None:
                raise ApiError(404, "not_found", f"no message with id {message_id}")
            channel_id, target_id = msg.channel_id, msg.user_id
        elif target_id is not None:
            if await chat_store.get_user(session, target_id) is None:
                raise ApiError(404, "not_found", f"no user with id {target_id}")
        else:
            raise ApiError(
                400, "missing_field", "report a message (message_id) or a user (user_id)"
            )
        if slug is not None and channel_id is None:
            found = await channel_queries.channel_with_owner(session, slug)
            if found is None:
                raise ApiError(404, "not_found", f"no channel {slug!r}")
            channel_id = found.channel.id
        if channel_id is None:
            raise ApiError(
                400, "missing_field", "a user report needs the channel (slug) it is about"
            )
        report = await report_store.create_report(
            session,
            reporter_id=user.id,
            channel_id=channel_id,
            message_id=message_id,
            target_user_id=target_id,
            reason=reason,
            details=details,
        )
        await session.commit()
    return json_reply({"id": report.id, "status": report.status.value}, status=201)


async def moderated_channel_ids(request: web.Request, user: User) -> list[int]:
    """Channels whose reports ``user`` may see: owned or moderated (all for an admin)."""
    async with request.app[DB_KEY].session() as session:
        return await report_store.moderated_channel_ids(session, user.id, is_admin=user.is_admin)


async def list_reports(request: web.Request) -> web.Response:
    user = await require_user(request)
    ids = await moderated_channel_ids(request, user)
    slug = request.query.get("channel")
    if slug:
        state = await channel_state(request, slug)
        if state.channel_id not in ids:
            raise ApiError(403, "forbidden", "you do not moderate this channel")
        ids = [state.channel_id]
    wanted = request.query.get("status", "open")
    if wanted not in ("open", "resolved", "dismissed", "all"):
        raise ApiError(400, "invalid", "status must be open, resolved, dismissed or all")
    status = None if wanted == "all" else ReportStatus(wanted)
    async with request.app[DB_KEY].session() as session:
        reports = await report_store.channel_reports(session, ids, status=status)
    return json_reply({"reports": reports})


async def resolve_report(request: web.Request) -> web.Response:
    user = await require_user(request)
    report_id = path_id(request, "report_id", "report")
    body = await read_json(request)
    status = field(body, "status", str, required=False, default="resolved")
    if status not in ("resolved", "dismissed"):
        raise ApiError(400, "invalid", "status must be resolved or dismissed")
    async with request.app[DB_KEY].session() as session:
        report = await report_store.get_report(session, report_id)
    if report is None or report.channel_id not in await moderated_channel_ids(request, user):
        raise ApiError(404, "not_found", f"no report {report_id} in a channel you moderate")
    async with request.app[DB_KEY].session() as session:
        await report_store.resolve_report(
            session, report_id, ReportStatus(status), user.id, datetime.now(UTC)
        )
        await session.commit()
    return json_reply({"id": report_id, "status": status})


# -- OpenAPI ---------------------------------------------------------------------------------

OPENAPI_PATHS: dict[str, Any] = {
    "/api/reports": {
        "post": {
            "summary": "Report a message or a user to the channel's moderators",
            "tags": ["chat"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {
                        "message_id": {"type": "integer"},
                        "user_id": {"type": "integer"},
                        "channel": {"type": "string"},
                        "reason": {"type": "string", "maxLength": 64},
                        "details": {"type": "string", "maxLength": 1000},
                    },
                }
            ),
            "responses": {
                "201": DONE,
                "400": error_response("Missing or invalid field"),
                "401": UNAUTHENTICATED,
                "404": error_response("No such message/user"),
            },
        },
        "get": {
            "summary": "Reports about channels you own or moderate (?channel=&status=)",
            "tags": ["chat"],
            "parameters": [
                {"name": "channel", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"enum": ["open", "resolved", "dismissed", "all"], "default": "open"},
                },
            ],
            "responses": {
                "200": DONE,
                "401": UNAUTHENTICATED,
                "403": NOT_MODERATOR,
                "404": error_response("No such channel"),
            },
        },
    },
    "/api/reports/{report_id}/resolve": {
        "post": {
            "summary": "Resolve or dismiss a report",
            "tags": ["chat"],
            "parameters": [
                {"name": "report_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "requestBody": json_body(
                {"type": "object", "properties": {"status": {"enum": ["resolved", "dismissed"]}}}
            ),
            "responses": {
                "200": DONE,
                "401": UNAUTHENTICATED,
                "404": error_response("No such report"),
            },
        }
    },
}
