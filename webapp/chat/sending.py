"""The send path of one chat message, from the socket or the API alike.

Checks in order (content, ban, timeout, followers-only, slow mode, rate limit, word filter),
each from memory first so a refused message costs no query -> the writer commits it (group
commit, writer.py) -> only then it is published on the bus. If the commit fails the sender
gets ``chat:error`` and the message is never published, so nobody sees a message that is not
in the history. On a cluster node slow mode and the rate limit are one Redis script instead,
so they hold across nodes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from mediaserver.cluster.counts import ClusterCounts, CountsUnavailable
from mediaserver.settings import ChatSettings
from storage.chat import ChannelChatState, NewMessage, StoredMessage

from .bus import ChatBus
from .content import ChatError, RateLimiter, apply_filter, clean_content
from .followers import Followers
from .history import message_event
from .metrics import ChatMetrics
from .moderation import Actor, can_moderate
from .writer import MessageWriter

# Called with each accepted message's chat:message event before it is published, to add what
# only the server can decide about its author (issue 16: whether the author may use a channel's
# follower-only emotes). Cheap and from memory where it can be: it is on every message's path.
MessageHook = Callable[[ChannelChatState, Actor, dict[str, Any]], Awaitable[None]]


class MessageSender:
    def __init__(
        self,
        cs: ChatSettings,
        followers: Followers,
        writer: MessageWriter,
        bus: ChatBus,
        metrics: ChatMetrics,
        counts: ClusterCounts | None = None,
    ) -> None:
        self.cs = cs
        self.followers = followers
        self.writer = writer
        self.bus = bus
        self.metrics = metrics
        self._slow: dict[tuple[int, int], float] = {}  # (channel, user) -> last accepted
        self.limiter = RateLimiter(cs.rate_limit_messages, cs.rate_limit_window, cs.mute_seconds)
        self.counts = counts
        self.hooks: list[MessageHook] = []  # ChatService.message_hooks

    async def _admit_shared(
        self, state: ChannelChatState, key: tuple[int, int], privileged: bool
    ) -> bool:
        """Slow mode and the rate limit across the cluster (Redis, issue 15): True once the
        message is admitted and counted there, ChatError if refused, False when Redis failed
        (the caller then applies this node's own limits, which every accepted message feeds).
        Redis counts the message when it admits it, so a message the word filter then refuses
        counts too."""
        assert self.counts is not None
        cs = self.cs
        slow = 0.0 if privileged else float(state.slow_mode_seconds or 0)
        try:
            verdict, wait = await self.counts.chat_admit(
                key[0], key[1], slow, cs.rate_limit_messages, cs.rate_limit_window, cs.mute_seconds
            )
        except CountsUnavailable:
            return False
        if verdict == "ok":
            return True
        if verdict == "slow_mode":
            message = f"slow mode is on: wait {wait:.0f} more seconds"
        elif verdict == "muted":
            message = f"you are sending messages too fast: muted for {wait:.0f} more seconds"
        else:
            message = (
                f"you are sending messages too fast (at most {cs.rate_limit_messages} in "
                f"{cs.rate_limit_window:g} s): muted for {cs.mute_seconds:g} seconds"
            )
        code = "slow_mode" if verdict == "slow_mode" else "rate_limited"
        raise ChatError(code, message, status=429, retry_after=wait)

    async def send(
        self, state: ChannelChatState, user: Actor, public: dict[str, Any], content: object
    ) -> dict[str, Any]:
        """Check, store, then publish one message; the chat:message event, or ChatError."""
        try:
            event = await self._send(state, user, public, content)
        except ChatError as err:
            self.metrics.refused.labels(err.code).inc()
            raise
        self.metrics.messages.inc()
        return event

    async def _send(
        self, state: ChannelChatState, user: Actor, public: dict[str, Any], content: object
    ) -> dict[str, Any]:
        text = clean_content(content, self.cs.max_length)
        now = datetime.now(UTC)
        uid = user.id
        if uid in state.bans:
            raise ChatError("banned", "you are banned from this chat", status=403)
        until = state.timeouts.get(uid)
        if until is not None and until > now:
            left = (until - now).total_seconds()
            raise ChatError(
                "timed_out",
                f"you are timed out for {left:.0f} more seconds",
                status=403,
                retry_after=left,
            )
        privileged = can_moderate(state, user)
        if (
            state.followers_only
            and not privileged
            and not await self.followers.follows(state.channel_id, uid)
        ):
            raise ChatError(
                "followers_only", "only followers of this channel can chat right now", status=403
            )
        mono = time.monotonic()
        key = (state.channel_id, uid)
        if self.counts is None or not await self._admit_shared(state, key, privileged):
            if state.slow_mode_seconds and not privileged:
                last = self._slow.get(key)
                if last is not None and mono - last < state.slow_mode_seconds:
                    wait = state.slow_mode_seconds - (mono - last)
                    raise ChatError(
                        "slow_mode",
                        f"slow mode is on: wait {wait:.0f} more seconds",
                        status=429,
                        retry_after=wait,
                    )
            self.limiter.check(key, mono)
        text = apply_filter(text, state.word_filter, state.filter_mode)
        self.limiter.record(key, mono)
        self._slow[key] = mono
        row = NewMessage(state.channel_id, state.stream_id, uid, text, now)
        new_id = await self.writer.store(row)
        event = message_event(
            state,
            StoredMessage(
                new_id,
                state.channel_id,
                row.stream_id,
                uid,
                public["username"],
                public["display_name"],
                text,
                now,
            ),
            user.is_admin,
            await self.followers.since(state.channel_id, uid),
        )
        for hook in self.hooks:
            await hook(state, user, event)
        await self.bus.publish(state.slug, [event])
        return event
