"""What the points API, the prediction API and the dashboard page share: the channel of a
route and who may act on it (checked when used, from the database), the JSON shapes, and the
live state that rides on the chat room (``PointsLive``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from mediaserver.settings import PointsSettings
from storage import channels as channel_queries
from storage import points as store
from storage.models import Channel, User
from storage.points import PredictionView, RedemptionView
from storage.points_models import PointReward

from ..errors import ApiError
from ..identity import can_manage
from ..keys import CHAT_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "no-store"}


def reply(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


async def route_channel(request: web.Request, session: AsyncSession) -> Channel:
    found = await channel_queries.channel_with_owner(session, request.match_info["slug"])
    if found is None:
        raise ApiError(404, "not_found", "no such channel")
    return found.channel


def require_owner(user: User, channel: Channel) -> None:
    if not can_manage(user, channel):
        raise ApiError(403, "forbidden", "only the channel's owner (or an admin) may do this")


async def require_moderator(session: AsyncSession, user: User, channel: Channel) -> None:
    """The channel's owner, one of its moderators or an admin, read now (a moderator removed a
    second ago is refused)."""
    if not await store.can_moderate(session, channel, user):
        raise ApiError(
            403, "forbidden", "only the channel's owner, its moderators and admins may do this"
        )


def defaults_of(p: PointsSettings) -> store.Rates:
    return store.Rates(True, p.watch_rate, p.follow_bonus, p.chat_bonus)


def defaults(request: web.Request) -> store.Rates:
    return defaults_of(request.app[SETTINGS_KEY].points)


def limits(request: web.Request) -> store.RewardLimits:
    p = request.app[SETTINGS_KEY].points
    return store.RewardLimits(p.max_cost, p.max_cooldown, p.max_rewards)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def reward_json(r: PointReward) -> dict[str, Any]:
    now = datetime.now(UTC)
    cooling = r.cooldown_until if r.cooldown_until is not None and r.cooldown_until > now else None
    return {
        "id": r.id,
        "title": r.title,
        "cost": r.cost,
        "prompt": r.prompt,
        "cooldown_seconds": r.cooldown_seconds,
        "max_per_stream": r.max_per_stream,
        "max_per_user_per_stream": r.max_per_user_per_stream,
        "enabled": r.enabled,
        "cooling_until": _iso(cooling),
    }


def redemption_json(v: RedemptionView) -> dict[str, Any]:
    return {
        "id": v.id,
        "reward_id": v.reward_id,
        "title": v.title,
        "cost": v.cost,
        "text": v.text,
        "status": v.status,
        "user": {"id": v.user_id, "username": v.username},
        "created_at": v.created_at.isoformat(),
        "resolved_at": _iso(v.resolved_at),
    }


def prediction_json(v: PredictionView) -> dict[str, Any]:
    return {
        "id": v.id,
        "question": v.question,
        "status": v.status,
        "locks_at": v.locks_at.isoformat(),
        "created_at": v.created_at.isoformat(),
        "ended_at": _iso(v.ended_at),
        "winning_outcome_id": v.winning_outcome_id,
        "pool": sum(o.total for o in v.outcomes),
        "outcomes": [
            {"id": o.id, "title": o.title, "total": o.total, "stakers": o.stakers}
            for o in v.outcomes
        ],
    }


class PointsLive:
    """Events of this area in the chat room: redemptions (``points:redemption``, published at
    once: the owner's queue and the chat show them) and the channel's prediction
    (``prediction:update``). Stakes only mark their prediction as changed; every
    ``points.publish_interval`` one event per changed prediction carries its totals, so a
    burst of stakes is one event per interval, not one per stake. With nothing changed the
    publisher sleeps instead of waking each interval to find nothing. The current prediction
    of each channel is kept here for the join hook (answered from memory)."""

    def __init__(self, app: web.Application, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.current: dict[str, dict[str, Any]] = {}
        self._dirty: dict[str, dict[str, Any]] = {}
        self._marked = asyncio.Event()  # set when _dirty gains an entry

    async def publish(self, slug: str, events: list[dict[str, Any]]) -> None:
        service = self.app.get(CHAT_KEY)
        if service is not None:
            await service.publish(slug, events)

    async def redemption(self, slug: str, view: RedemptionView) -> None:
        await self.publish(
            slug, [{"type": "points:redemption", "redemption": redemption_json(view)}]
        )

    async def prediction(self, slug: str, view: PredictionView, *, now: bool) -> None:
        data = prediction_json(view)
        if view.status in ("open", "locked"):
            self.current[slug] = data
        else:
            self.current.pop(slug, None)
        if now:
            self._dirty.pop(slug, None)
            await self.publish(slug, [{"type": "prediction:update", "prediction": data}])
        else:
            self._dirty[slug] = data
            self._marked.set()

    def bus_listener(self, slug: str, events: list[dict[str, Any]]) -> None:
        """Every process keeps the current prediction of each room from the bus, so a socket
        joining on another process than the one that took the stake sees it too."""
        for event in events:
            if event.get("type") != "prediction:update":
                continue
            data = event["prediction"]
            mine = self.current.get(slug)
            if mine is not None and mine["id"] > data["id"]:
                continue
            if data["status"] in ("open", "locked"):
                self.current[slug] = data
            else:
                self.current.pop(slug, None)

    async def join_hook(self, service: Any, state: Any, client: Any) -> list[dict[str, Any]]:
        data = self.current.get(state.slug)
        return [] if data is None else [{"type": "prediction:update", "prediction": data}]

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for slug, data in dirty.items():
            await self.publish(slug, [{"type": "prediction:update", "prediction": data}])

    async def run(self) -> None:
        while True:
            await self._marked.wait()
            await asyncio.sleep(self.interval)  # the stakes of one interval, one event
            self._marked.clear()  # before the flush: a stake during it waits for the next
            try:
                await self.flush()
            except Exception:
                log.exception("publishing prediction totals failed")

    async def load(self, session: AsyncSession) -> None:
        """The running predictions, read once at start-up."""
        for slug, view in await store.active_predictions(session):
            self.current[slug] = prediction_json(view)


LIVE_KEY = web.AppKey("points_live", PointsLive)
