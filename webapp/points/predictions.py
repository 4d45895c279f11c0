"""Predictions JSON API, under ``/api/channels/{slug}/predictions``: the owner, the channel's
moderators or an admin start one (a question, 2 to 10 outcomes, a staking window in seconds),
lock it, resolve it (an outcome) or cancel it; logged-in viewers stake points on one outcome
while the window is open. The prediction must belong to the route's channel and the actor
must moderate that channel (read when used): a moderator of another channel gets 403.

Every change reaches the room as ``prediction:update`` (``PointsLive``): state changes at once,
stakes aggregated per ``points.publish_interval``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from storage import points as store
from storage.models import Channel
from storage.points import PredictionView

from ..errors import ApiError
from ..identity import require_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..parsing import field, path_id, read_json
from .common import LIVE_KEY, prediction_json, reply, require_moderator, route_channel


async def _prediction(
    request: web.Request, session: AsyncSession
) -> tuple[Channel, PredictionView]:
    channel = await route_channel(request, session)
    prediction_id = path_id(request, "prediction_id", "prediction")
    view = await store.prediction_view(session, prediction_id)
    if view.channel_id != channel.id:
        raise ApiError(404, "not_found", "no such prediction on this channel")
    return channel, view


async def _publish(request: web.Request, channel: Channel, view: PredictionView, now: bool) -> None:
    await request.app[LIVE_KEY].prediction(channel.slug, view, now=now)


async def create(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    question = field(body, "question", str)
    outcomes = field(body, "outcomes", list)
    limits = request.app[SETTINGS_KEY].points
    window = field(body, "window_seconds", int, required=False, default=120)
    if not limits.min_window <= window <= limits.max_window:
        raise ApiError(
            400,
            "invalid",
            f"window_seconds must be between {limits.min_window} and {limits.max_window}",
        )
    if not all(isinstance(o, str) for o in outcomes):
        raise ApiError(400, "invalid", "outcomes must be strings")
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        await require_moderator(session, user, channel)
        view = await store.create_prediction(
            session, channel.id, user.id, question, outcomes, window
        )
        await session.commit()
    await _publish(request, channel, view, True)
    return reply({"prediction": prediction_json(view)}, 201)


async def stake(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    outcome_id = field(body, "outcome_id", int)
    amount = field(body, "amount", int)
    if not 1 <= amount <= request.app[SETTINGS_KEY].points.max_stake:
        raise ApiError(400, "invalid", "amount must be at least 1 and at most points.max_stake")
    async with request.app[DB_KEY].session() as session:
        channel, view = await _prediction(request, session)
        whole = await store.stake(session, view.id, user.id, outcome_id, amount)
        await session.commit()
        view = await store.prediction_view(session, view.id)
        balance = await store.balance(session, user.id, channel.id)
    await _publish(request, channel, view, False)
    return reply(
        {
            "prediction": prediction_json(view),
            "my_stake": {"outcome_id": outcome_id, "amount": whole},
            "balance": balance,
        }
    )


async def _end(request: web.Request, action: str) -> web.Response:
    user = await require_user(request)
    body: dict[str, Any] = await read_json(request) if action == "resolve" else {}
    outcome_id = field(body, "outcome_id", int) if action == "resolve" else 0
    async with request.app[DB_KEY].session() as session:
        channel, view = await _prediction(request, session)
        await require_moderator(session, user, channel)
        if action == "lock":
            await store.lock_prediction(session, view.id)
        elif action == "resolve":
            await store.resolve_prediction(session, view.id, outcome_id)
        else:
            await store.cancel_prediction(session, view.id)
        await session.commit()
        view = await store.prediction_view(session, view.id)
    await _publish(request, channel, view, True)
    return reply({"prediction": prediction_json(view)})


async def lock(request: web.Request) -> web.Response:
    return await _end(request, "lock")


async def resolve(request: web.Request) -> web.Response:
    return await _end(request, "resolve")


async def cancel(request: web.Request) -> web.Response:
    return await _end(request, "cancel")


BASE = "/api/channels/{slug}/predictions"
ONE = BASE + "/{prediction_id}"


def setup_routes(app: web.Application) -> None:
    app.router.add_post(BASE, create)
    app.router.add_post(ONE + "/stake", stake)
    app.router.add_post(ONE + "/lock", lock)
    app.router.add_post(ONE + "/resolve", resolve)
    app.router.add_post(ONE + "/cancel", cancel)
