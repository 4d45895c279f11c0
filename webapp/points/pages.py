"""The dashboard's points page of a channel, ``/dashboard/channels/{slug}/points``: the rates
and rewards (owner or admin), the live redemption queue and the prediction controls (owner,
moderators, admins). ``points-dashboard.js`` does the rest through the JSON API and listens
to the channel's chat room for new redemptions and prediction totals."""

from __future__ import annotations

from aiohttp import web

from storage import points as store

from ..errors import ApiError
from ..identity import can_manage, require_page_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..render import render
from .common import defaults, prediction_json, redemption_json, reward_json, route_channel

PAGE = "/dashboard/channels/{slug}/points"


async def points_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    settings = request.app[SETTINGS_KEY].points
    async with request.app[DB_KEY].session() as session:
        channel = await route_channel(request, session)
        if not await store.can_moderate(session, channel, user):
            raise ApiError(403, "forbidden", "only the channel's owner and moderators see this")
        rates = await store.get_rates(session, channel.id, defaults(request))
        rewards = await store.list_rewards(session, channel.id)
        queue = await store.list_redemptions(
            session, channel.id, status="pending", limit=settings.queue_size
        )
        prediction = await store.latest_prediction(session, channel.id)
    response = render(
        request,
        "points/dashboard.html",
        {
            "channel": channel,
            "owner": can_manage(user, channel),
            "rates": rates,
            "max_rate": settings.max_rate,
            "rewards": [reward_json(r) for r in rewards],
            "queue": [redemption_json(v) for v in queue],
            "prediction": None if prediction is None else prediction_json(prediction),
            "min_window": settings.min_window,
            "max_window": settings.max_window,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, points_page)
