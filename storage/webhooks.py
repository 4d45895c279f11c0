"""A channel's outgoing webhooks and the deliveries owed to them.

An endpoint (``Webhook``) belongs to one channel: a URL (http or https only), a secret made
here and never chosen by the creator (it keys the HMAC receivers check), the events it wants
and the body format. Each event is a ``WebhookDelivery`` row per matching enabled endpoint, so
a crash between "the stream went live" and "the receiver answered" loses nothing: whatever is
still ``pending`` and due is picked up by the next sender, in this process or after a restart.

A sender *claims* a due delivery by moving its ``next_attempt_at`` past a lease in the same
UPDATE that checks it is still due: two senders (two processes on one database) cannot both
send it, and a sender that dies mid-request leaves it due again once the lease runs out.

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import rowcount
from storage.discovery_models import (
    WEBHOOK_EVENTS,
    WEBHOOK_FORMATS,
    Webhook,
    WebhookDelivery,
)
from storage.errors import NotFoundError, ValidationError
from storage.models import Channel, Stream, User, utcnow

SECRET_PREFIX = "whsec_"
# The column's width: no setting may allow more.
URL_COLUMN_LENGTH = 2048
ERROR_COLUMN_LENGTH = 512


def new_secret() -> str:
    """256 random bits, hex, with a prefix that says what it is when it turns up in a log."""
    return SECRET_PREFIX + secrets.token_hex(32)


def check_url(url: Any, max_length: int = URL_COLUMN_LENGTH) -> str:
    """``url`` as an absolute http(s) URL with a host, or ValidationError saying why not.

    Only the syntax: whether the host may be reached (loopback, private networks) is the
    sender's check, at registration and again at each delivery, where the name is resolved.
    """
    if not isinstance(url, str):
        raise ValidationError("the URL must be a string")
    url = url.strip()
    limit = min(max_length, URL_COLUMN_LENGTH)
    if not url:
        raise ValidationError("the URL is required")
    if len(url) > limit:
        raise ValidationError(f"the URL may be at most {limit} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise ValidationError(
            "the URL may hold only printable ASCII without spaces (encode the rest)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError("the URL is malformed (bad host or port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValidationError("the URL must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("the URL may not carry a user name or password")
    if parts.fragment:
        raise ValidationError("the URL may not have a #fragment")
    if port == 0:
        raise ValidationError("the URL's port must be 1-65535")
    return url


def check_events(events: Any) -> list[str]:
    """A non-empty subset of ``WEBHOOK_EVENTS``, in their canonical order, without repeats."""
    if not isinstance(events, (list, tuple)) or not all(isinstance(e, str) for e in events):
        raise ValidationError("events must be a list of event names")
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise ValidationError(
            f"unknown event {unknown[0][:40]!r}: choose from {', '.join(WEBHOOK_EVENTS)}"
        )
    if not events:
        raise ValidationError(f"choose at least one event of {', '.join(WEBHOOK_EVENTS)}")
    return [e for e in WEBHOOK_EVENTS if e in events]


def check_format(payload_format: Any) -> str:
    if payload_format not in WEBHOOK_FORMATS:
        raise ValidationError(f"payload_format must be one of {', '.join(WEBHOOK_FORMATS)}")
    return str(payload_format)


# -- endpoints -----------------------------------------------------------------------------


async def list_webhooks(session: AsyncSession, channel_id: int) -> list[Webhook]:
    rows = await session.scalars(
        select(Webhook).where(Webhook.channel_id == channel_id).order_by(Webhook.id)
    )
    return list(rows)


async def get_webhook(session: AsyncSession, channel_id: int, webhook_id: int) -> Webhook:
    """The channel's webhook ``webhook_id``; NotFoundError for another channel's too."""
    hook = await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.channel_id == channel_id)
    )
    if hook is None:
        raise NotFoundError(f"no webhook {webhook_id} on this channel")
    return hook


async def create_webhook(
    session: AsyncSession,
    channel_id: int,
    *,
    url: str,
    events: Sequence[str],
    payload_format: str = "json",
    enabled: bool = True,
    max_url_length: int = URL_COLUMN_LENGTH,
    max_per_channel: int = 10,
) -> Webhook:
    """A new endpoint with a fresh secret. ValidationError for bad input or a full channel."""
    hook = Webhook(
        channel_id=channel_id,
        url=check_url(url, max_url_length),
        events=check_events(events),
        payload_format=check_format(payload_format),
        enabled=bool(enabled),
        secret=new_secret(),
        created_at=utcnow(),
    )
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.channel_id == channel_id)
    )
    if (count or 0) >= max_per_channel:
        raise ValidationError(f"a channel may have at most {max_per_channel} webhooks")
    session.add(hook)
    await session.flush()
    return hook


async def update_webhook(
    session: AsyncSession,
    hook: Webhook,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    payload_format: str | None = None,
    enabled: bool | None = None,
    max_url_length: int = URL_COLUMN_LENGTH,
) -> Webhook:
    """Change the fields given (None: keep). Every field is checked before any is set."""
    new_url = check_url(url, max_url_length) if url is not None else hook.url
    new_events = check_events(events) if events is not None else hook.events
    new_format = check_format(payload_format) if payload_format is not None else None
    hook.url = new_url
    hook.events = list(new_events)
    if new_format is not None:
        hook.payload_format = new_format
    if enabled is not None:
        hook.enabled = bool(enabled)
    await session.flush()
    return hook


async def rotate_secret(session: AsyncSession, hook: Webhook) -> Webhook:
    """A new secret; the old one stops signing at once (deliveries not yet sent included)."""
    hook.secret = new_secret()
    await session.flush()
    return hook


async def delete_webhook(session: AsyncSession, channel_id: int, webhook_id: int) -> None:
    """Remove the endpoint and its deliveries. NotFoundError when it is not the channel's."""
    hook = await get_webhook(session, channel_id, webhook_id)
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    await session.delete(hook)
    await session.flush()


# -- what events carry ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelFacts:
    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class StreamFacts:
    id: int
    title: str
    started_at: datetime | None
    ended_at: datetime | None


async def channel_facts(session: AsyncSession, channel_id: int) -> ChannelFacts | None:
    row = (
        await session.execute(
            select(Channel.id, Channel.slug, Channel.name).where(Channel.id == channel_id)
        )
    ).first()
    return None if row is None else ChannelFacts(row.id, row.slug, row.name)


async def stream_facts(session: AsyncSession, stream_id: int) -> StreamFacts | None:
    row = (
        await session.execute(
            select(Stream.id, Stream.title, Stream.started_at, Stream.ended_at).where(
                Stream.id == stream_id
            )
        )
    ).first()
    return None if row is None else StreamFacts(row.id, row.title, row.started_at, row.ended_at)


async def username_of(session: AsyncSession, user_id: int) -> str | None:
    return await session.scalar(select(User.username).where(User.id == user_id))


async def has_webhooks_for(session: AsyncSession, channel_id: int) -> bool:
    """Whether the channel has any enabled endpoint: events skip their queries when not."""
    found = await session.scalar(
        select(Webhook.id).where(Webhook.channel_id == channel_id, Webhook.enabled).limit(1)
    )
    return found is not None


# -- deliveries ----------------------------------------------------------------------------


async def enqueue(
    session: AsyncSession,
    channel_id: int,
    event: str,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> list[int]:
    """A pending delivery, due now, for each enabled endpoint of the channel that wants
    ``event``; their ids (none when no endpoint wants it)."""
    if event not in WEBHOOK_EVENTS:
        raise ValidationError(f"unknown webhook event {event!r}")
    now = now or utcnow()
    hooks = await session.scalars(
        select(Webhook).where(Webhook.channel_id == channel_id, Webhook.enabled)
    )
    rows = [
        WebhookDelivery(
            webhook_id=hook.id,
            event=event,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for hook in hooks
        if event in (hook.events or [])
    ]
    session.add_all(rows)
    await session.flush()
    return [row.id for row in rows]


@dataclass(frozen=True)
class DueDelivery:
    """What a sender needs for one attempt, read in the same claim."""

    id: int
    webhook_id: int
    event: str
    payload: dict[str, Any]
    attempts: int
    url: str
    secret: str
    payload_format: str


async def claim_due(
    session: AsyncSession,
    now: datetime,
    *,
    limit: int,
    lease: float,
    skip: Iterable[int] = (),
) -> list[DueDelivery]:
    """Up to ``limit`` pending deliveries due by ``now`` (oldest due first), each claimed for
    ``lease`` seconds. A delivery whose endpoint was disabled stays pending, unclaimed, until
    the endpoint is enabled again. ``skip``: ids this sender already holds."""
    skipped = set(skip)
    rows = (await session.execute(_due_deliveries(), {"now": now, "n": limit + len(skipped)})).all()
    until = now + timedelta(seconds=lease)
    claimed: list[DueDelivery] = []
    for delivery, hook in rows:
        if delivery.id in skipped or len(claimed) >= limit:
            continue
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,  # another sender's claim moved it
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result):
            claimed.append(
                DueDelivery(
                    id=delivery.id,
                    webhook_id=hook.id,
                    event=delivery.event,
                    payload=dict(delivery.payload or {}),
                    attempts=delivery.attempts,
                    url=hook.url,
                    secret=hook.secret,
                    payload_format=hook.payload_format,
                )
            )
    await session.flush()
    return claimed


@functools.cache
def _due_deliveries() -> Select[WebhookDelivery, Webhook]:
    """Built once: every process's sender runs it every ``webhooks.poll_interval``, nearly
    always to find nothing, and building the join cost more than SQLite's answer."""
    return (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= bindparam("now"),
            Webhook.enabled,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(bindparam("n"))
    )


async def release(session: AsyncSession, delivery_ids: Iterable[int], now: datetime) -> None:
    """Give back claims a stopping sender will not finish: due again at once, not when the
    lease runs out (the attempt did not count)."""
    ids = list(delivery_ids)
    if ids:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == "pending")
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.flush()


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest pending delivery of an enabled endpoint is due (None: nothing)."""
    return await session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at))
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == "pending", Webhook.enabled)
    )


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """The wait after the ``attempts``-th failed attempt: base, 2 base, 4 base, ... <= cap."""
    return float(min(cap, base * (2 ** max(0, attempts - 1))))


async def record_attempt(
    session: AsyncSession,
    delivery_id: int,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    now: datetime,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
) -> WebhookDelivery | None:
    """Count one attempt: succeeded, or pending again after the backoff, or failed once
    ``max_attempts`` are spent. None when the delivery is gone (its endpoint was deleted)."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return None
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = None if ok else (error or "failed")[:ERROR_COLUMN_LENGTH]
    if ok:
        delivery.status = "succeeded"
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= max_attempts:
        delivery.status = "failed"
        delivery.next_attempt_at = None
    else:
        delivery.status = "pending"
        wait = backoff_seconds(delivery.attempts, backoff_base, backoff_max)
        delivery.next_attempt_at = now + timedelta(seconds=wait)
    await session.flush()
    return delivery


async def resend(
    session: AsyncSession, webhook_id: int, delivery_id: int, now: datetime | None = None
) -> WebhookDelivery:
    """A new delivery of the same event and body to the same endpoint, due now (the old row
    keeps its history). NotFoundError when ``delivery_id`` is not this webhook's."""
    old = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id
        )
    )
    if old is None:
        raise NotFoundError(f"no delivery {delivery_id} of this webhook")
    now = now or utcnow()
    row = WebhookDelivery(
        webhook_id=webhook_id,
        event=old.event,
        payload=dict(old.payload or {}),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def recent_deliveries(
    session: AsyncSession, webhook_id: int, limit: int
) -> list[WebhookDelivery]:
    """The webhook's latest ``limit`` deliveries, newest first."""
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list(rows)


async def get_delivery(session: AsyncSession, delivery_id: int) -> WebhookDelivery | None:
    return await session.get(WebhookDelivery, delivery_id)


async def prune_deliveries(session: AsyncSession, older_than: datetime) -> int:
    """Remove finished (succeeded or failed) deliveries created before ``older_than``."""
    result = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status != "pending", WebhookDelivery.created_at < older_than
        )
    )
    await session.flush()
    return rowcount(result)
