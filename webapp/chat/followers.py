"""Who follows which channel, as far as this process's followers-only checks have seen.

Only positives are kept (a follower found once costs no query at their next message); a
follow or unfollow committed anywhere reaches every process through the chat bus
(``ChatService.follow_changed``) and is applied here at once, so an unfollower cannot keep
chatting on a cached answer. A version bumped by each change keeps a lookup that raced one
from caching a stale answer.
"""

from __future__ import annotations

from storage import Database
from storage import chat as chat_store


class Followers:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: set[tuple[int, int]] = set()  # (channel id, user id)
        self._version = 0

    def apply(self, channel_id: int, user_id: int, following: bool) -> None:
        """A follow change committed (here or in another process)."""
        self._version += 1
        if following:
            self._known.add((channel_id, user_id))
        else:
            self._known.discard((channel_id, user_id))

    async def follows(self, channel_id: int, user_id: int) -> bool:
        key = (channel_id, user_id)
        if key in self._known:
            return True
        version = self._version
        async with self.db.session() as session:
            follows = await chat_store.is_follower(session, channel_id, user_id)
        if follows and self._version == version:
            self._known.add(key)
        return follows
