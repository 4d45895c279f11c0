"""Chat metrics on the server's Prometheus registry (``/metrics``).

Registered once per registry: the app factory may run twice against one server's metrics
(tests build a second app to inspect its routes), and Prometheus refuses a name twice.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, ChatMetrics] = (
    weakref.WeakKeyDictionary()
)


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.sockets = Gauge("aethex_chat_sockets", "Open chat WebSockets.", registry=r)
        self.messages = Counter(
            "aethex_chat_messages_total", "Chat messages stored and broadcast.", registry=r
        )
        self.refused = Counter(
            "aethex_chat_refused_total",
            "Chat messages refused, by error code.",
            ["code"],
            registry=r,
        )
        self.dropped = Counter(
            "aethex_chat_dropped_sockets_total",
            "Chat sockets closed because their send queue overflowed (slow readers).",
            ["channel"],
            registry=r,
        )
        self.closed = Counter(
            "aethex_chat_closed_sockets_total",
            "Chat sockets closed by the server with 1008, by reason: account_disabled, "
            "session_ended, token_revoked, frame_budget.",
            ["reason"],
            registry=r,
        )


def chat_metrics(registry: CollectorRegistry | None) -> ChatMetrics:
    if registry is None:
        return ChatMetrics(None)
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = ChatMetrics(registry)
    return found
