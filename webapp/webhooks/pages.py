"""The dashboard's webhooks page of a channel, ``/dashboard/channels/{slug}/webhooks``.

Plain forms, no script needed: add, edit, delete an endpoint, rotate its secret, resend a
delivery. Each POST carries the page's CSRF field (checked by the identity middleware), is
checked for ownership again, and answers with a redirect back (or the page with the error).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import webhooks as store
from storage.discovery_models import WEBHOOK_EVENTS, WEBHOOK_FORMATS
from storage.models import Channel, User

from ..errors import ApiError
from ..identity import require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..parsing import path_id, read_form
from ..render import form_text, message_of, redirect, render
from .manage import check_destination, delivery_json, owner_only, webhook_json
from .sender import SENDER_KEY
from .signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER

PAGE = "/dashboard/channels/{slug}/webhooks"


async def _channel(request: web.Request, user: User) -> Channel:
    async with request.app[DB_KEY].session() as session:
        found = await channel_queries.channel_with_owner(session, request.match_info["slug"])
    if found is None:
        raise ApiError(404, "not_found", "no such channel")
    owner_only(user, found.channel)
    return found.channel


async def _page(
    request: web.Request, channel: Channel, error: str | None = None, status: int = 200
) -> web.Response:
    settings = request.app[SETTINGS_KEY].webhooks
    hooks: list[dict[str, Any]] = []
    async with request.app[DB_KEY].session() as session:
        for hook in await store.list_webhooks(session, channel.id):
            rows = await store.recent_deliveries(session, hook.id, settings.deliveries_shown)
            hooks.append({**webhook_json(hook), "deliveries": [delivery_json(r) for r in rows]})
    response = render(
        request,
        "webhooks.html",
        {
            "channel": channel,
            "hooks": hooks,
            "events": WEBHOOK_EVENTS,
            "formats": WEBHOOK_FORMATS,
            "error": error,
            "max_url_length": settings.max_url_length,
            "max_per_channel": settings.max_per_channel,
            "headers": {
                "signature": SIGNATURE_HEADER,
                "event": EVENT_HEADER,
                "delivery": DELIVERY_HEADER,
            },
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"  # carries secrets
    return response


async def webhooks_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    return await _page(request, await _channel(request, user))


def _fields(form: Any) -> dict[str, Any]:
    return {
        "url": form_text(form, "url"),
        "events": [e for e in form.getall("events", []) if isinstance(e, str)],
        "payload_format": form_text(form, "payload_format") or "json",
        "enabled": form.get("enabled") is not None,
    }


async def _act(request: web.Request, action: str) -> web.Response:
    user = await require_page_user(request)
    channel = await _channel(request, user)
    form = await read_form(request)
    settings = request.app[SETTINGS_KEY].webhooks
    anchor = ""
    try:
        async with request.app[DB_KEY].session() as session:
            if action == "create":
                fields = _fields(form)
                fields["url"] = await check_destination(request, fields["url"])
                hook = await store.create_webhook(
                    session,
                    channel.id,
                    **fields,
                    max_url_length=settings.max_url_length,
                    max_per_channel=settings.max_per_channel,
                )
                anchor = f"#webhook-{hook.id}"
            else:
                webhook_id = path_id(request, "webhook_id", "webhook")
                anchor = f"#webhook-{webhook_id}"
                hook = await store.get_webhook(session, channel.id, webhook_id)
                if action == "edit":
                    fields = _fields(form)
                    fields["url"] = await check_destination(request, fields["url"])
                    await store.update_webhook(
                        session, hook, **fields, max_url_length=settings.max_url_length
                    )
                elif action == "delete":
                    await store.delete_webhook(session, channel.id, hook.id)
                    anchor = ""
                elif action == "secret":
                    await store.rotate_secret(session, hook)
                else:  # resend
                    delivery_id = path_id(request, "delivery_id", "delivery")
                    await store.resend(session, hook.id, delivery_id)
            await session.commit()
    except Exception as exc:
        status, message = message_of(exc)
        return await _page(request, channel, message, status)
    request.app[SENDER_KEY].wake()
    return redirect(PAGE.format(slug=channel.slug) + anchor)


async def create_form(request: web.Request) -> web.Response:
    return await _act(request, "create")


async def edit_form(request: web.Request) -> web.Response:
    return await _act(request, "edit")


async def delete_form(request: web.Request) -> web.Response:
    return await _act(request, "delete")


async def secret_form(request: web.Request) -> web.Response:
    return await _act(request, "secret")


async def resend_form(request: web.Request) -> web.Response:
    return await _act(request, "resend")


def setup_routes(app: web.Application) -> None:
    one = PAGE + "/{webhook_id}"
    app.router.add_get(PAGE, webhooks_page, name="channel-webhooks")
    app.router.add_post(PAGE, create_form)
    app.router.add_post(one, edit_form)
    app.router.add_post(one + "/delete", delete_form)
    app.router.add_post(one + "/secret", secret_form)
    app.router.add_post(one + "/deliveries/{delivery_id}/resend", resend_form)
