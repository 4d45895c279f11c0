"""This node's identity: the name it claims leases under and the URL other nodes reach it at."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from mediaserver.settings import Settings


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    advertise_url: str
    role: str

    @property
    def takes_publishers(self) -> bool:
        """An origin (or the one-process "all") accepts RTMP and serves its streams' HLS."""
        return self.role in ("all", "origin")

    @property
    def serves_web(self) -> bool:
        """A web node (or "all") serves pages, the API and chat."""
        return self.role in ("all", "web")

    @classmethod
    def from_settings(cls, settings: Settings) -> NodeIdentity:
        """Defaults that are unique on one machine too: two nodes on one host differ in their
        ports, so the host name alone would not do."""
        c = settings.cluster
        host = socket.gethostname()
        node_id = c.node_id or f"{host}-{settings.rtmp.port}-{settings.http.port}"
        url = (c.advertise_url or f"http://{host}:{settings.http.port}").rstrip("/")
        return cls(node_id=node_id, advertise_url=url, role=c.role)
