"""What a delivery sends: the body (our JSON document or a Discord message) and its headers.

The signature scheme (README, "Webhooks"): ``X-AeThex-Signature: t=<unix seconds>,v1=<hex>``
where ``<hex>`` is HMAC-SHA256 keyed with the endpoint's secret over ``f"{t}.{body}"``, the
exact bytes of the body. Signing the timestamp with the body lets a receiver refuse a replayed
request: one whose ``t`` is more than a few minutes old no longer verifies as fresh, and the
timestamp cannot be changed without the secret. Pure functions: tested without a network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-AeThex-Signature"
EVENT_HEADER = "X-AeThex-Event"
DELIVERY_HEADER = "X-AeThex-Delivery"
USER_AGENT = "AeThex-Webhooks/1"
# Discord refuses a message "content" over 2000 characters.
DISCORD_MAX = 2000


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """The receiver's side (what the README's snippet does), used by the tests."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), fields.get("v1", ""))


def discord_text(event: str, payload: dict[str, Any]) -> str:
    channel = payload.get("channel") or {}
    stream = payload.get("stream") or {}
    name = channel.get("name") or channel.get("slug") or "A channel"
    url = channel.get("url") or ""
    if event == "stream.online":
        text = f"{name} is live: {stream.get('title') or ''} {url}"
    elif event == "stream.offline":
        text = f"{name} is offline. {url}"
    elif event == "channel.follow":
        follower = (payload.get("follower") or {}).get("username") or "Someone"
        text = f"{follower} followed {name} {url}"
    else:
        text = f"{name}: {event} {url}"
    text = " ".join(text.split())
    return text if len(text) <= DISCORD_MAX else text[: DISCORD_MAX - 1] + "…"


def body_of(delivery_id: int, event: str, payload: dict[str, Any], payload_format: str) -> bytes:
    """The bytes sent. Discord's message pings nobody, whatever a stream title holds."""
    document: dict[str, Any]
    if payload_format == "discord":
        document = {"content": discord_text(event, payload), "allowed_mentions": {"parse": []}}
    else:
        document = {"id": delivery_id, "event": event, **payload}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def headers_of(
    delivery_id: int, event: str, secret: str, body: bytes, timestamp: int
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }
