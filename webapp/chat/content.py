"""The chat's content rules, kept in the floor module ``webapp.chat_content`` so the community
channels (issue 16) apply the very same ones; re-exported here for the chat's own modules."""

from __future__ import annotations

from ..chat_content import ChatError, RateLimiter, apply_filter, clean_content

__all__ = ["ChatError", "RateLimiter", "apply_filter", "clean_content"]
