"""The channel points JSON API: a viewer's balance and the channel's rewards, the player's
heartbeat, rewards (owner), redemptions (any logged-in viewer) and the redemption queue
(owner, moderators, admins), and the channel's point rates (owner).

Routes (``/api/channels/{slug}/...`` unless said): ``GET points``, ``GET points/ledger``,
``PUT points/settings``, ``POST /api/points/heartbeat``, ``POST rewards``,
``PATCH``/``DELETE rewards/{reward_id}``, ``POST rewards/{reward_id}/redeem``,
``GET redemptions``, ``POST redemptions/{redemption_id}/fulfil`` and ``.../refund``.
Permissions are read from the database when used. Bad fields: 400; short of points, a
cooldown or a limit: 409; someone else's channel: 403.
"""

from __future__ import annotations

import time

from aiohttp import web

from storage import points as store

from ..errors import ApiError
from ..identity import current_user, require_user, session_cookie
from ..keys import DB_KEY, HLS_KEY, REGISTRY_KEY, SETTINGS_KEY
from ..parsing import field, path_id, query_int, read_json
from .accrual import ACCRUAL_KEY
from .common import (
    LIVE_KEY,
    defaults,
    limits,
    prediction_json,
    redemption_json,
    reply,
    require_moderator,
    require_owner,
    reward_json,
    route_channel,
)


async def channel_points(request: web.Request) -> web.Response:
    user = await current_user(request)
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        rates = await store.get_rates(session, channel.id, defaults(request))
        manager = user is not None and (user.is_admin or user.id == channel.owner_id)
        rewards = await store.list_rewards(session, channel.id, enabled_only=not manager)
        prediction = await store.latest_prediction(session, channel.id)
        balance = stake = None
        moderator = False
        if user is not None:
            balance = await store.balance(session, user.id, channel.id)
            moderator = await store.can_moderate(session, channel, user)
            if prediction is not None:
                mine = await store.user_stake(session, prediction.id, user.id)
                if mine is not None:
                    stake = {"outcome_id": mine[0], "amount": mine[1]}
    return reply(
        {
            "enabled": rates.enabled,
            "balance": balance,
            "rates": {
                "watch_rate": rates.watch_rate,
                "follow_bonus": rates.follow_bonus,
                "chat_bonus": rates.chat_bonus,
            },
            "rewards": [reward_json(r) for r in rewards],
            "prediction": None if prediction is None else prediction_json(prediction),
            "my_stake": stake,
            "can_moderate": moderator,
            "heartbeat_interval": request.app[SETTINGS_KEY].points.heartbeat_interval,
        }
    )


async def my_ledger(request: web.Request) -> web.Response:
    user = await require_user(request)
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        entries = await store.ledger(session, user.id, channel.id, limit)
        balance = await store.balance(session, user.id, channel.id)
    return reply(
        {
            "balance": balance,
            "entries": [
                {
                    "id": e.id,
                    "amount": e.amount,
                    "kind": e.kind,
                    "ref_id": e.ref_id,
                    "created_at": e.created_at.isoformat(),
                }
                for e in entries
            ],
        }
    )


async def update_settings(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        require_owner(user, channel)
        now = await store.get_rates(session, channel.id, defaults(request))
        rates = store.Rates(
            field(body, "enabled", bool, required=False, default=now.enabled),
            field(body, "watch_rate", int, required=False, default=now.watch_rate),
            field(body, "follow_bonus", int, required=False, default=now.follow_bonus),
            field(body, "chat_bonus", int, required=False, default=now.chat_bonus),
        )
        await store.set_rates(session, channel.id, rates, request.app[SETTINGS_KEY].points.max_rate)
        await session.commit()
    return reply(
        {
            "enabled": rates.enabled,
            "watch_rate": rates.watch_rate,
            "follow_bonus": rates.follow_bonus,
            "chat_bonus": rates.chat_bonus,
        }
    )


async def heartbeat(request: web.Request) -> web.Response:
    """Credited only if this login session's player fetched the channel's media lately."""
    user = await require_user(request)
    body = await read_json(request)
    slug = field(body, "slug", str)
    live = request.app[REGISTRY_KEY].get(slug)
    if live is None or live.ended:
        raise ApiError(409, "not_live", f"channel {slug[:64]!r} is not live")
    settings = request.app[SETTINGS_KEY].points
    login = session_cookie(request)
    credited = False
    if login is not None:
        since = time.monotonic() - settings.media_window
        if request.app[HLS_KEY].viewers.login_fetched(live.slug, login, since):
            credited = request.app[ACCRUAL_KEY].beat(user.id, live.channel_id)
    return reply({"credited": credited, "next_in": settings.heartbeat_interval})


def _reward_body(body: dict[str, object]) -> dict[str, object]:
    return {
        "title": field(body, "title", str, required=False),
        "cost": field(body, "cost", int, required=False),
        "prompt": field(body, "prompt", str, required=False),
        "cooldown_seconds": field(body, "cooldown_seconds", int, required=False),
        "max_per_stream": field(body, "max_per_stream", int, required=False),
        "max_per_user_per_stream": field(body, "max_per_user_per_stream", int, required=False),
        "enabled": field(body, "enabled", bool, required=False),
    }


async def create_reward(request: web.Request) -> web.Response:
    user = await require_user(request)
    values = _reward_body(await read_json(request))
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        require_owner(user, channel)
        row = await store.create_reward(session, channel.id, values, limits(request))
        await session.commit()
        return reply({"reward": reward_json(row)}, 201)


async def update_reward(request: web.Request) -> web.Response:
    user = await require_user(request)
    reward_id = path_id(request, "reward_id", "reward")
    values = _reward_body(await read_json(request))
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        require_owner(user, channel)
        row = await store.get_reward(session, channel.id, reward_id)
        await store.update_reward(session, row, values, limits(request))
        await session.commit()
        return reply({"reward": reward_json(row)})


async def delete_reward(request: web.Request) -> web.Response:
    user = await require_user(request)
    reward_id = path_id(request, "reward_id", "reward")
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        require_owner(user, channel)
        row = await store.get_reward(session, channel.id, reward_id)
        refunded = await store.delete_reward(session, row, user.id)
        await session.commit()
    return reply({"refunded": refunded})


async def redeem(request: web.Request) -> web.Response:
    user = await require_user(request)
    reward_id = path_id(request, "reward_id", "reward")
    body = await read_json(request)
    text = field(body, "text", str, required=False, default="")
    live = request.app[REGISTRY_KEY].get(request.match_info["slug"])
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        if not (await store.get_rates(session, channel.id, defaults(request))).enabled:
            raise ApiError(409, "conflict", "channel points are off on this channel")
        stream_id = live.stream_id if live is not None and not live.ended else None
        row = await store.redeem(
            session,
            channel_id=channel.id,
            reward_id=reward_id,
            user_id=user.id,
            stream_id=stream_id,
            text=text,
            max_text=request.app[SETTINGS_KEY].points.max_text,
        )
        await session.commit()
        view = await store.redemption_view(session, row.id)
        balance = await store.balance(session, user.id, channel.id)
    await request.app[LIVE_KEY].redemption(channel.slug, view)
    return reply({"redemption": redemption_json(view), "balance": balance}, 201)


async def list_redemptions(request: web.Request) -> web.Response:
    user = await require_user(request)
    status = request.query.get("status") or None
    if status not in (None, "pending", "fulfilled", "refunded"):
        raise ApiError(400, "invalid", "status must be pending, fulfilled or refunded")
    size = request.app[SETTINGS_KEY].points.queue_size
    limit = query_int(request, "limit", size, minimum=1, maximum=size)
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        await require_moderator(session, user, channel)
        rows = await store.list_redemptions(session, channel.id, status=status, limit=limit)
    return reply({"redemptions": [redemption_json(v) for v in rows]})


async def _settle(request: web.Request, *, refund: bool) -> web.Response:
    user = await require_user(request)
    redemption_id = path_id(request, "redemption_id", "redemption")
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        await require_moderator(session, user, channel)
        await store.settle_redemption(session, channel.id, redemption_id, user.id, refund=refund)
        await session.commit()
        view = await store.redemption_view(session, redemption_id)
    await request.app[LIVE_KEY].redemption(channel.slug, view)
    return reply({"redemption": redemption_json(view)})


async def fulfil(request: web.Request) -> web.Response:
    return await _settle(request, refund=False)


async def refund(request: web.Request) -> web.Response:
    return await _settle(request, refund=True)


BASE = "/api/channels/{slug}"


def setup_routes(app: web.Application) -> None:
    app.router.add_get(BASE + "/points", channel_points)
    app.router.add_get(BASE + "/points/ledger", my_ledger)
    app.router.add_put(BASE + "/points/settings", update_settings)
    app.router.add_post("/api/points/heartbeat", heartbeat)
    app.router.add_post(BASE + "/rewards", create_reward)
    app.router.add_patch(BASE + "/rewards/{reward_id}", update_reward)
    app.router.add_delete(BASE + "/rewards/{reward_id}", delete_reward)
    app.router.add_post(BASE + "/rewards/{reward_id}/redeem", redeem)
    app.router.add_get(BASE + "/redemptions", list_redemptions)
    app.router.add_post(BASE + "/redemptions/{redemption_id}/fulfil", fulfil)
    app.router.add_post(BASE + "/redemptions/{redemption_id}/refund", refund)
