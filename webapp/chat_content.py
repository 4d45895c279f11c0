"""What a chat message may contain, the word filter, and the per-user send limits.

A floor module (issue 16): the live chat (``webapp.chat``, which re-exports it as
``webapp.chat.content``) and the community channels (``webapp.community``) apply the same
rules, and areas never import each other.

Messages are plain text end to end: trimmed, bounded, control characters refused (newlines and
tabs become spaces), and never turned into HTML by the server; the page renders them with
``textContent``. Links stay text in the message; chat.js makes http(s) URLs into links with
``rel="noopener nofollow ugc"`` and no other scheme.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from functools import lru_cache

from webapp.errors import ApiError


class ChatError(ApiError):
    """A send or moderation request refused; ``code`` is stable, ``message`` is for people.

    An ApiError, so the API's error middleware answers it like any other (with Retry-After for
    a rate limit); the socket turns it into a ``chat:error`` event instead.
    """

    def __init__(
        self, code: str, message: str, *, status: int = 400, retry_after: float | None = None
    ) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(max(1, round(retry_after)))}
        super().__init__(status, code, message, headers)
        self.retry_after = retry_after

    def event(self) -> dict[str, object]:
        ev: dict[str, object] = {"type": "chat:error", "code": self.code, "message": self.message}
        if self.retry_after is not None:
            ev["retry_after"] = round(self.retry_after, 1)
        return ev


_SPACES = re.compile(r"[\t\n\r]+")


def clean_content(content: object, max_length: int) -> str:
    if not isinstance(content, str):
        raise ChatError("invalid", "content must be a string")
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", content)).strip()
    if not text:
        raise ChatError("empty", "the message is empty")
    if len(text) > max_length:
        raise ChatError(
            "too_long", f"the message is too long ({len(text)} characters, at most {max_length})"
        )
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ChatError("invalid", "the message contains control characters")
    return text


@lru_cache(maxsize=256)
def _filter_re(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def apply_filter(text: str, words: tuple[str, ...], mode: str) -> str:
    """``text`` with filtered words masked (``****``), or ChatError in reject mode."""
    pattern = _filter_re(words)
    if pattern is None or not pattern.search(text):
        return text
    if mode == "reject":
        raise ChatError("filtered", "the message contains a word this channel does not allow")
    return pattern.sub(lambda m: "*" * len(m.group(0)), text)


class RateLimiter:
    """At most ``count`` accepted messages per ``window`` seconds per key; past that the key
    is muted for ``mute`` seconds. In memory, per process."""

    def __init__(self, count: int, window: float, mute: float, max_keys: int = 100_000) -> None:
        self.count = count
        self.window = window
        self.mute = mute
        self.max_keys = max_keys
        self._sent: dict[tuple[int, int], deque[float]] = {}
        self._muted: dict[tuple[int, int], float] = {}

    def check(self, key: tuple[int, int], now: float) -> None:
        until = self._muted.get(key)
        if until is not None:
            if now < until:
                raise ChatError(
                    "rate_limited",
                    f"you are sending messages too fast: muted for {until - now:.0f} more seconds",
                    status=429,
                    retry_after=until - now,
                )
            del self._muted[key]
        sent = self._sent.get(key)
        if sent is None:
            if len(self._sent) >= self.max_keys:
                self._sent.clear()  # a memory bound; forgetting only makes the limit laxer
            sent = self._sent[key] = deque()
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if len(sent) >= self.count:
            self._muted[key] = now + self.mute
            sent.clear()
            raise ChatError(
                "rate_limited",
                f"you are sending messages too fast (at most {self.count} in "
                f"{self.window:g} s): muted for {self.mute:g} seconds",
                status=429,
                retry_after=self.mute,
            )

    def record(self, key: tuple[int, int], now: float) -> None:
        self._sent.setdefault(key, deque()).append(now)
