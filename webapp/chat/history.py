"""What a joining socket is shown first: the room's recent messages, as ``chat:message`` events
with today's badges, from the room's in-memory window (recent.py says why), filtered by the
reader's block list. No query once the window is loaded, however many sockets join.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import Database
from storage import chat as chat_store
from storage import raids as raid_store
from storage.chat import ChannelChatState, StoredMessage

from .badges import follower_badge, is_follower_badge
from .frames import iso_time
from .moderation import badges
from .recent import RecentMessages


def message_event(
    state: ChannelChatState,
    m: StoredMessage,
    is_admin: bool,
    follower_since: datetime | None = None,
) -> dict[str, Any]:
    """A stored message as the ``chat:message`` event sockets and the API show; with
    ``follower_since`` (when the author followed), a follower-age badge as of the message."""
    marks = badges(state, m.user_id, is_admin)
    tier = follower_badge(follower_since, m.created_at)
    if tier is not None:
        marks.append(tier)
    return {
        "type": "chat:message",
        "id": m.id,
        "user": {
            "id": m.user_id,
            "username": m.username,
            "display_name": m.display_name,
            "badges": marks,
        },
        "content": m.content,
        "created_at": iso_time(m.created_at),
    }


class JoinHistory:
    def __init__(self, db: Database, size: int) -> None:
        self.db = db
        self.size = size  # chat.history: what a join gets
        # Recent messages per room with sockets here; opened and dropped with the room.
        self.windows: dict[str, RecentMessages] = {}

    def open(self, slug: str) -> None:
        self.windows[slug] = RecentMessages(self.size)

    def close(self, slug: str) -> None:
        self.windows.pop(slug, None)

    def apply(self, slug: str, event: dict[str, Any]) -> None:
        """A ``chat:message`` or ``chat:deleted`` delivered by the bus (from any process)."""
        recent = self.windows.get(slug)
        if recent is not None:
            recent.apply(event)

    async def read(self, state: ChannelChatState, blocked: set[int]) -> list[dict[str, Any]]:
        """The join history of ``state``'s room for a reader who blocked ``blocked``."""
        recent = self.windows.get(state.slug)
        if recent is None:  # the room closed under this socket: answer without keeping it
            recent = RecentMessages(self.size)
        await recent.window(lambda limit: self._load(state, limit))
        if recent.badges_for is not state:
            self._rebadge(recent, state)
        return recent.for_reader(blocked)

    async def _load(self, state: ChannelChatState, limit: int) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            # Looked up at call time: tests count these calls.
            rows = await chat_store.recent_messages(session, state.channel_id, limit)
            admins = await chat_store.admin_ids(session, {r.user_id for r in rows})
            since = await raid_store.follow_dates(
                session, state.channel_id, {r.user_id for r in rows}
            )
        return [message_event(state, r, r.user_id in admins, since.get(r.user_id)) for r in rows]

    @staticmethod
    def _rebadge(recent: RecentMessages, state: ChannelChatState) -> None:
        """Owner/moderator badges as of ``state`` (the history shows today's roles); new
        dicts, since the old ones may still sit in a room's batch."""
        for i, event in enumerate(recent.items):
            user = event["user"]
            kept = [b for b in user["badges"] if is_follower_badge(b)]
            now = badges(state, user["id"], "admin" in user["badges"]) + kept
            if now != user["badges"]:
                recent.items[i] = {**event, "user": {**user, "badges": now}}
        recent.badges_for = state
