"""A user's public profile: ``/u/{username}``.

Display name, avatar, banner, bio, the links they saved (only safe ones, see
``webapp.sharing.safe_url``) and the listed channels they own with whether each is live now.
An unknown and a disabled user get the same 404, so the page cannot tell them apart; an
unlisted channel is never shown here (it is reachable only by its link). The page carries
Open Graph and Twitter card tags like the channel page.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import channel_pages
from storage.accounts import display_name
from storage.models import Channel

from .identity import upload_url
from .keys import DB_KEY, REGISTRY_KEY, SETTINGS_KEY
from .render import not_found_page, render
from .sharing import absolute, profile_links, social_meta


def _is_live(app: web.Application, channel: Channel) -> bool:
    live = app[REGISTRY_KEY].get(channel.slug)
    return live is not None and not live.ended and live.channel_id == channel.id


async def user_page(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    limit = request.app[SETTINGS_KEY].channel_page.profile_channels
    async with request.app[DB_KEY].session() as session:
        found = await channel_pages.public_profile(session, username, max_channels=limit)
    if found is None:
        return not_found_page(request, "user")
    user, profile = found.user, found.profile
    name = display_name(user, profile)
    channels: list[dict[str, Any]] = [
        {
            "slug": c.slug,
            "name": c.name,
            "live": _is_live(request.app, c),
            "followers": c.follower_count,
            "avatar": upload_url(c.avatar_path),
        }
        for c in found.channels
    ]
    channels.sort(key=lambda c: not c["live"])  # live ones first, then as the query ordered
    avatar = upload_url(profile.avatar_path) if profile else None
    banner = upload_url(profile.banner_path) if profile else None
    bio = profile.bio if profile else ""
    path = f"/u/{user.username}"
    return render(
        request,
        "user.html",
        {
            "username": user.username,
            "name": name,
            "bio": bio,
            "avatar_url": avatar,
            "banner_url": banner,
            "links": profile_links(profile.social_links) if profile else [],
            "channels": channels,
            "canonical": absolute(request, path),
            "social": social_meta(
                request,
                title=f"{name} (@{user.username})",
                description=bio or f"{name} on AeThex Live",
                path=path,
                image=banner or avatar,
                kind="profile",
            )
            + [("property", "profile:username", user.username)],
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/u/{username}", user_page, name="user")
