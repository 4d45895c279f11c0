"""What the JSON API and the dashboard page share: who may manage a channel's webhooks (its
owner, checked on every request), the checks of an endpoint's fields, and the JSON shapes.

Owner only, not admins: the secret signs what receivers trust, and an admin who needs to stop
deliveries can disable the channel instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from storage import webhooks as store
from storage.discovery_models import Webhook, WebhookDelivery
from storage.errors import ValidationError
from storage.models import Channel, User

from ..documents import load_channel
from ..errors import ApiError
from ..keys import SETTINGS_KEY
from .addresses import RefusedDestination, check_host


def owner_only(user: User, channel: Channel) -> None:
    if user.id != channel.owner_id:
        raise ApiError(403, "forbidden", "only the channel's owner may manage its webhooks")


async def owned_channel(request: web.Request, session: AsyncSession, user: User) -> Channel:
    """The ``{slug}`` channel if ``user`` owns it: 404 unknown, 403 someone else's."""
    channel, _ = await load_channel(request, session)
    owner_only(user, channel)
    return channel


async def check_destination(request: web.Request, url: str) -> str:
    """``url`` checked as storage does, then its host: a 400 when deliveries may not go there."""
    settings = request.app[SETTINGS_KEY].webhooks
    url = store.check_url(url, settings.max_url_length)
    parsed = urlsplit(url)  # check_url made sure it parses, with a host
    try:
        await check_host(
            parsed.hostname or "",
            parsed.port or 0,
            allow_private=settings.allow_private_addresses,
            within=settings.timeout,
        )
    except RefusedDestination as exc:
        raise ValidationError(str(exc)) from None
    return url


def webhook_json(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events or []),
        "payload_format": hook.payload_format,
        "enabled": hook.enabled,
        "secret": hook.secret,
        "created_at": hook.created_at.isoformat(),
    }


def delivery_json(row: WebhookDelivery) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "event": row.event,
        "status": row.status,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "next_attempt_at": iso(row.next_attempt_at),
        "delivered_at": iso(row.delivered_at),
    }
