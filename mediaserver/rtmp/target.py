"""Where a publish goes: ``rtmp[s]://host[:port]/app[/...]/stream_key`` taken apart.

Platforms hand out either one URL with the key at the end or a server URL plus a separate key
(OBS's "Server" and "Stream Key" fields), so both forms are accepted. The application is the
whole path before the key (``live2``, ``rtmp``, ``app/instance``), the tcUrl is built with an
explicit port as ffmpeg and OBS send it, and a ``?query`` belongs to the stream name (where
platforms put their extra tokens).

The key is a secret that lets anyone broadcast as the creator: it is left out of ``repr`` and
of every error message, and :attr:`PublishTarget.redacted` is the URL to log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

DEFAULT_PORTS: Final = {"rtmp": 1935, "rtmps": 443}


@dataclass(frozen=True)
class PublishTarget:
    scheme: str  # "rtmp" or "rtmps"
    host: str
    port: int
    app: str
    stream_key: str = field(repr=False)

    @property
    def tls(self) -> bool:
        return self.scheme == "rtmps"

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tc_url(self) -> str:
        """The ``tcUrl`` of ``connect``: the URL without the stream name."""
        return f"{self.scheme}://{self._netloc}/{self.app}"

    @property
    def redacted(self) -> str:
        """The URL with the key replaced, for logs and status pages."""
        return f"{self.tc_url}/<key>"

    @classmethod
    def parse(cls, url: str, stream_key: str | None = None) -> PublishTarget:
        """Take ``url`` apart; with ``stream_key`` the whole path of ``url`` is the app.

        Raises ValueError naming what is wrong (never quoting the key).
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid RTMP URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"RTMP URL must start with rtmp:// or rtmps://, not {scheme!r}://")
        if not parts.hostname:
            raise ValueError("RTMP URL has no host")
        path = parts.path.lstrip("/")
        if stream_key is None:
            app, _, key = path.rpartition("/")  # a trailing "/" leaves the key empty
            if parts.query:
                key = f"{key}?{parts.query}"
        else:
            app, key = path.rstrip("/"), stream_key
            if parts.query:
                app = f"{app}?{parts.query}"
        if not app:
            raise ValueError("RTMP URL has no application (rtmp://host/APP/key)")
        if not key:
            raise ValueError("RTMP URL has no stream key")
        if any(c in key for c in "\r\n\x00"):
            raise ValueError("stream key contains control characters")
        return cls(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], app, key)


__all__ = ["DEFAULT_PORTS", "PublishTarget"]
