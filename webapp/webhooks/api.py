"""The webhooks JSON API, under ``/api/channels/{slug}/webhooks``: the owner lists, adds,
edits and deletes endpoints, rotates a secret, reads the latest deliveries and resends one.
Bad URL, events or format: 400 in the error shape; someone else's channel: 403."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import webhooks as store
from storage.discovery_models import WEBHOOK_EVENTS, WEBHOOK_FORMATS

from ..identity import require_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from .manage import check_destination, delivery_json, owned_channel, webhook_json
from .sender import SENDER_KEY

NO_STORE = {"Cache-Control": "no-store"}  # answers carry secrets


def _reply(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


async def list_webhooks(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        hooks = await store.list_webhooks(session, channel.id)
    return _reply({"webhooks": [webhook_json(h) for h in hooks]})


async def create_webhook(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    url = field(body, "url", str)
    events = field(body, "events", list)
    payload_format = field(body, "payload_format", str, required=False, default="json")
    enabled = field(body, "enabled", bool, required=False, default=True)
    settings = request.app[SETTINGS_KEY].webhooks
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        store.check_events(events)
        store.check_format(payload_format)
        url = await check_destination(request, url)
        hook = await store.create_webhook(
            session,
            channel.id,
            url=url,
            events=events,
            payload_format=payload_format,
            enabled=enabled,
            max_url_length=settings.max_url_length,
            max_per_channel=settings.max_per_channel,
        )
        await session.commit()
        return _reply({"webhook": webhook_json(hook)}, 201)


async def get_webhook(request: web.Request) -> web.Response:
    user = await require_user(request)
    webhook_id = path_id(request, "webhook_id", "webhook")
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        hook = await store.get_webhook(session, channel.id, webhook_id)
        return _reply({"webhook": webhook_json(hook)})


async def update_webhook(request: web.Request) -> web.Response:
    user = await require_user(request)
    webhook_id = path_id(request, "webhook_id", "webhook")
    body = await read_json(request)
    url = field(body, "url", str, required=False)
    events = field(body, "events", list, required=False)
    payload_format = field(body, "payload_format", str, required=False)
    enabled = field(body, "enabled", bool, required=False)
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        hook = await store.get_webhook(session, channel.id, webhook_id)
        if url is not None:
            url = await check_destination(request, url)
        await store.update_webhook(
            session,
            hook,
            url=url,
            events=events,
            payload_format=payload_format,
            enabled=enabled,
            max_url_length=request.app[SETTINGS_KEY].webhooks.max_url_length,
        )
        await session.commit()
        data = webhook_json(hook)
    request.app[SENDER_KEY].wake()  # enabled again: what waited is due
    return _reply({"webhook": data})


async def delete_webhook(request: web.Request) -> web.Response:
    user = await require_user(request)
    webhook_id = path_id(request, "webhook_id", "webhook")
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        await store.delete_webhook(session, channel.id, webhook_id)
        await session.commit()
    return web.Response(status=204, headers=NO_STORE)


async def rotate_secret(request: web.Request) -> web.Response:
    user = await require_user(request)
    webhook_id = path_id(request, "webhook_id", "webhook")
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        hook = await store.get_webhook(session, channel.id, webhook_id)
        await store.rotate_secret(session, hook)
        await session.commit()
        return _reply({"webhook": webhook_json(hook)})


async def list_deliveries(request: web.Request) -> web.Response:
    user = await require_user(request)
    webhook_id = path_id(request, "webhook_id", "webhook")
    settings = request.app[SETTINGS_KEY].webhooks
    limit = query_int(
        request,
        "limit",
        settings.deliveries_shown,
        minimum=1,
        maximum=settings.deliveries_page_max,
    )
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        hook = await store.get_webhook(session, channel.id, webhook_id)
        rows = await store.recent_deliveries(session, hook.id, limit)
    return _reply({"deliveries": [delivery_json(r) for r in rows]})


async def resend_delivery(request: web.Request) -> web.Response:
    user = await require_user(request)
    webhook_id = path_id(request, "webhook_id", "webhook")
    delivery_id = path_id(request, "delivery_id", "delivery")
    async with request.app[DB_KEY].session() as session:
        channel = await owned_channel(request, session, user)
        hook = await store.get_webhook(session, channel.id, webhook_id)
        row = await store.resend(session, hook.id, delivery_id)
        await session.commit()
        data = delivery_json(row)
    request.app[SENDER_KEY].wake()
    return _reply({"delivery": data}, 202)


BASE = "/api/channels/{slug}/webhooks"
ONE = BASE + "/{webhook_id}"


def setup_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_webhooks)
    app.router.add_post(BASE, create_webhook)
    app.router.add_get(ONE, get_webhook)
    app.router.add_patch(ONE, update_webhook)
    app.router.add_delete(ONE, delete_webhook)
    app.router.add_post(ONE + "/secret", rotate_secret)
    app.router.add_get(ONE + "/deliveries", list_deliveries)
    app.router.add_post(ONE + "/deliveries/{delivery_id}/resend", resend_delivery)


# -- OpenAPI -------------------------------------------------------------------------------

_WEBHOOK = {"$ref": "#/components/schemas/Webhook"}
_DELIVERY = {"$ref": "#/components/schemas/WebhookDelivery"}
_ID_PARAM = {"in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_HOOK_PARAMS = [SLUG_PARAM, {"name": "webhook_id", **_ID_PARAM}]
_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
}
_BAD = {
    "400": error_response(
        "Bad URL (not http/https, too long, a non-public address), "
        "unknown events or format, or too many webhooks"
    )
}
_FIELDS: dict[str, Any] = {
    "url": {"type": "string", "description": "http:// or https:// URL the events are POSTed to"},
    "events": {
        "type": "array",
        "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
        "minItems": 1,
    },
    "payload_format": {"type": "string", "enum": list(WEBHOOK_FORMATS)},
    "enabled": {"type": "boolean"},
}


def _envelope(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: schema}}


OPENAPI_SCHEMAS: dict[str, Any] = {
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "payload_format", "enabled", "secret", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            **_FIELDS,
            "secret": {
                "type": "string",
                "description": "HMAC-SHA256 key of X-AeThex-Signature (made by the server)",
            },
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "webhook_id", "event", "status", "attempts", "created_at"],
        "properties": {
            "id": {"type": "integer", "description": "Sent as X-AeThex-Delivery"},
            "webhook_id": {"type": "integer"},
            "event": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "delivered_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    BASE: {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "The channel's webhooks, with their secrets (owner only)",
            "tags": ["webhooks"],
            "responses": {
                "200": json_response(
                    "Webhooks",
                    _envelope("webhooks", {"type": "array", "items": _WEBHOOK}),
                ),
                **_ERRORS,
            },
        },
        "post": {
            "summary": "Add a webhook; the server makes its secret (owner only)",
            "tags": ["webhooks"],
            "requestBody": json_body(
                {"type": "object", "required": ["url", "events"], "properties": _FIELDS}
            ),
            "responses": {
                "201": json_response("Created", _envelope("webhook", _WEBHOOK)),
                **_BAD,
                **_ERRORS,
            },
        },
    },
    ONE: {
        "parameters": _HOOK_PARAMS,
        "get": {
            "summary": "One webhook (owner only)",
            "tags": ["webhooks"],
            "responses": {
                "200": json_response("Webhook", _envelope("webhook", _WEBHOOK)),
                **_ERRORS,
            },
        },
        "patch": {
            "summary": "Change a webhook's URL, events, format or enabled (owner only)",
            "tags": ["webhooks"],
            "requestBody": json_body({"type": "object", "properties": _FIELDS}),
            "responses": {
                "200": json_response("Changed", _envelope("webhook", _WEBHOOK)),
                **_BAD,
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete a webhook and its deliveries (owner only)",
            "tags": ["webhooks"],
            "responses": {"204": {"description": "Deleted"}, **_ERRORS},
        },
    },
    ONE + "/secret": {
        "parameters": _HOOK_PARAMS,
        "post": {
            "summary": "Rotate the secret: the old one stops signing at once (owner only)",
            "tags": ["webhooks"],
            "responses": {
                "200": json_response("New secret", _envelope("webhook", _WEBHOOK)),
                **_ERRORS,
            },
        },
    },
    ONE + "/deliveries": {
        "parameters": _HOOK_PARAMS,
        "get": {
            "summary": "The webhook's latest deliveries, newest first (owner only)",
            "tags": ["webhooks"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "How many (webhooks.deliveries_page_max at most)",
                }
            ],
            "responses": {
                "200": json_response(
                    "Deliveries", _envelope("deliveries", {"type": "array", "items": _DELIVERY})
                ),
                **_ERRORS,
            },
        },
    },
    ONE + "/deliveries/{delivery_id}/resend": {
        "parameters": [*_HOOK_PARAMS, {"name": "delivery_id", **_ID_PARAM}],
        "post": {
            "summary": "Send a delivery's event again, as a new delivery due now (owner only)",
            "tags": ["webhooks"],
            "responses": {
                "202": json_response("Queued", _envelope("delivery", _DELIVERY)),
                **_ERRORS,
            },
        },
    },
}
