"""Go-live emails: one per notification, or a digest every ``email.digest_interval``.

Off when ``email.smtp_host`` is empty. The queue is the notification rows themselves
(``emailed_at`` NULL, see ``storage.notifications``): every ``email.send_interval`` the sender
claims a batch under a lease, mails it over one SMTP connection (``aiosmtplib``) and marks
each row sent; a row it could not send is released and tried at the next look. A crash
between the claim and the mark leaves the row due again once its lease
(``email.claim_seconds``) runs out, so nothing is lost, whichever process picks it up.

Every email carries a signed one-click unsubscribe link (RFC 8058): the HMAC of the user id
under the server's secret, so the link needs no login and cannot be forged for someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlencode

import aiosmtplib

from mediaserver.settings import Settings
from mediaserver.tasks import stop_task
from storage import Database
from storage import notifications as store
from storage.notifications import OwedEmail

from .metrics import NotificationMetrics

log = logging.getLogger(__name__)

_UNSUBSCRIBE_CONTEXT = b"aethex-unsubscribe-v1:"
UNSUBSCRIBE_PATH = "/notifications/unsubscribe"


def unsubscribe_token(secret: bytes, user_id: int) -> str:
    return hmac.new(
        secret, _UNSUBSCRIBE_CONTEXT + str(user_id).encode(), hashlib.sha256
    ).hexdigest()


def check_unsubscribe(secret: bytes, user_id: int, token: str) -> bool:
    return hmac.compare_digest(
        unsubscribe_token(secret, user_id).encode("ascii"), token.encode("utf-8", "replace")
    )


def site_url(settings: Settings) -> str:
    """The site's address for links in emails: ``http.public_url``, else this host and port."""
    if settings.http.public_url:
        return settings.http.public_url.rstrip("/")
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{settings.http.port}"


def unsubscribe_url(settings: Settings, secret: bytes, user_id: int) -> str:
    query = urlencode({"u": user_id, "t": unsubscribe_token(secret, user_id)})
    return f"{site_url(settings)}{UNSUBSCRIBE_PATH}?{query}"


def _line(item: OwedEmail, site: str) -> tuple[str, str]:
    """(subject-like headline, link) of one notification."""
    p = item.payload
    name = str(p.get("channel_name") or p.get("channel_slug") or "A channel")
    title = str(p.get("title") or "")
    headline = f"{name} is live: {title}" if title else f"{name} is live"
    category = p.get("category")
    if category:
        headline += f" ({category})"
    return headline, f"{site}/streams/{p.get('channel_slug', '')}"


class Mailer:
    def __init__(
        self, settings: Settings, db: Database, secret: bytes, metrics: NotificationMetrics
    ) -> None:
        self.settings = settings
        self.db = db
        self.secret = secret
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.email.smtp_host)

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def poke(self) -> None:
        """Look for due emails now instead of at the next interval."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("notifications: sending emails failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.email.send_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> int:
        """One look: the due single emails, then the due digests. Returns emails sent."""
        e = self.settings.email
        now = datetime.now(UTC)
        until = now + timedelta(seconds=e.claim_seconds)
        async with self.db.session() as session:
            singles = await store.claim_single_emails(session, now, until, e.batch_size)
            await session.commit()
        sent = await self._send_singles(singles) if singles else 0
        cutoff = now - timedelta(seconds=e.digest_interval)
        async with self.db.session() as session:
            users = await store.digest_users_due(session, now, cutoff, e.batch_size)
        for user_id in users:
            async with self.db.session() as session:
                items = await store.claim_digest(session, user_id, now, until)
                await session.commit()
            if items:
                sent += await self._send_digest(items)
        return sent

    # -- messages -----------------------------------------------------------------------------

    def _message(self, item: OwedEmail, subject: str, body: str) -> EmailMessage:
        e = self.settings.email
        unsubscribe = unsubscribe_url(self.settings, self.secret, item.user_id)
        msg = EmailMessage()
        msg["From"] = e.from_address
        msg["To"] = item.email
        msg["Subject"] = subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=e.from_address.rpartition("@")[2].strip("> "))
        msg["List-Unsubscribe"] = f"<{unsubscribe}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["Auto-Submitted"] = "auto-generated"
        settings_url = f"{site_url(self.settings)}/dashboard/notifications"
        msg.set_content(
            f"{body}\n\n--\nYou get this because you follow these channels with their bell on."
            f"\nEmail settings: {settings_url}\nStop go-live emails: {unsubscribe}\n"
        )
        return msg

    def single(self, item: OwedEmail) -> EmailMessage:
        site = site_url(self.settings)
        headline, link = _line(item, site)
        return self._message(item, headline, f"Hi {item.username},\n\n{headline}\n\nWatch: {link}")

    def digest(self, items: Sequence[OwedEmail]) -> EmailMessage:
        site = site_url(self.settings)
        limit = self.settings.email.digest_max_items
        lines = [f"- {headline}\n  {link}" for headline, link in (_line(i, site) for i in items)]
        shown = lines[:limit]
        if len(lines) > limit:
            shown.append(f"...and {len(lines) - limit} more: {site}/notifications")
        n = len(items)
        subject = f"{n} channel{'s' if n != 1 else ''} you follow went live"
        body = f"Hi {items[0].username},\n\nSince the last digest:\n\n" + "\n".join(shown)
        return self._message(items[0], subject, body)

    # -- sending --------------------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        e = self.settings.email
        return aiosmtplib.SMTP(
            hostname=e.smtp_host,
            port=e.smtp_port,
            username=e.smtp_user or None,
            password=e.smtp_password or None,
            start_tls=e.smtp_starttls,
            use_tls=False,
            timeout=e.smtp_timeout,
        )

    async def _finish(
        self, sent: list[int], failed: list[int], digest_of: int | None = None
    ) -> None:
        async with self.db.session() as session:
            now = datetime.now(UTC)
            if sent:
                await store.mark_emailed(session, sent, now)
            if failed:
                await store.release_claims(session, failed)
            if digest_of is not None:
                await store.digest_sent(session, digest_of, now)
            await session.commit()

    async def _send_singles(self, items: list[OwedEmail]) -> int:
        sent: list[int] = []
        skipped = [i.id for i in items if not i.wanted]
        todo = [i for i in items if i.wanted]
        failed: list[int] = []
        try:
            if todo:
                async with self._client() as smtp:
                    for item in todo:
                        try:
                            await smtp.send_message(self.single(item))
                        except aiosmtplib.SMTPRecipientsRefused:
                            log.warning("notifications: %s refused; not retried", item.email)
                            skipped.append(item.id)
                            continue
                        sent.append(item.id)
                        self.metrics.emails.labels("single", "sent").inc()
        except (aiosmtplib.SMTPException, OSError) as exc:
            failed = [i.id for i in todo if i.id not in sent and i.id not in skipped]
            self.metrics.emails.labels("single", "failed").inc(len(failed))
            log.warning(
                "notifications: SMTP failed (%s); %d email(s) retried later", exc, len(failed)
            )
        finally:
            await self._finish(sent + skipped, failed)
        return len(sent)

    async def _send_digest(self, items: list[OwedEmail]) -> int:
        ids = [i.id for i in items]
        user_id = items[0].user_id
        wanted = [i for i in items if i.wanted]
        if not wanted:
            await self._finish(ids, [])
            return 0
        try:
            async with self._client() as smtp:
                await smtp.send_message(self.digest(wanted))
        except aiosmtplib.SMTPRecipientsRefused:
            await self._finish(ids, [], user_id)
            return 0
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.metrics.emails.labels("digest", "failed").inc()
            log.warning("notifications: SMTP failed (%s); the digest is retried later", exc)
            await self._finish([], ids)
            return 0
        self.metrics.emails.labels("digest", "sent").inc()
        await self._finish(ids, [], user_id)
        return 1
