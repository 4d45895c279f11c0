"""Report queries: reports of a chat message or a user to a channel's moderators, the queue
they work through, and which channels' queues a user may see.

Same rules as ``storage.queries``: every function takes an ``AsyncSession``, flushes and never
commits; bad input raises ``ValidationError`` with a message fit for the person who typed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.chat import user_public
from storage.chat_models import ChannelModerator
from storage.errors import NotFoundError, ValidationError
from storage.models import Channel, Message, Report, ReportStatus

REPORT_REASON_MAX = 64
REPORT_DETAILS_MAX = 1000


async def create_report(
    session: AsyncSession,
    *,
    reporter_id: int,
    channel_id: int | None,
    message_id: int | None,
    target_user_id: int | None,
    reason: str,
    details: str,
) -> Report:
    if not isinstance(reason, str) or not reason.strip() or len(reason.strip()) > REPORT_REASON_MAX:
        raise ValidationError(f"reason must be 1-{REPORT_REASON_MAX} characters")
    if not isinstance(details, str) or len(details) > REPORT_DETAILS_MAX:
        raise ValidationError(f"details must be text of at most {REPORT_DETAILS_MAX} characters")
    report = Report(
        reporter_id=reporter_id,
        channel_id=channel_id,
        message_id=message_id,
        target_user_id=target_user_id,
        reason=reason.strip(),
        details=details.strip(),
    )
    session.add(report)
    await session.flush()
    return report


async def channel_reports(
    session: AsyncSession,
    channel_ids: Sequence[int],
    *,
    status: ReportStatus | None = ReportStatus.OPEN,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Reports about the given channels, newest first, with the reported message's text."""
    if not channel_ids:
        return []
    q = (
        select(Report, Message, Channel)
        .outerjoin(Message, Message.id == Report.message_id)
        .join(Channel, Channel.id == Report.channel_id)
        .where(Report.channel_id.in_(list(channel_ids)))
    )
    if status is not None:
        q = q.where(Report.status == status)
    rows = (await session.execute(q.order_by(Report.id.desc()).limit(limit))).all()
    users = await user_public(
        session, {uid for r, _, _ in rows for uid in (r.reporter_id, r.target_user_id) if uid}
    )
    out = []
    for report, msg, channel in rows:
        out.append(
            {
                "id": report.id,
                "channel": channel.slug,
                "reason": report.reason,
                "details": report.details,
                "status": report.status.value,
                "created_at": report.created_at.isoformat(),
                "reporter": users.get(report.reporter_id),
                "target_user": users.get(report.target_user_id) if report.target_user_id else None,
                "message": None
                if msg is None
                else {"id": msg.id, "content": msg.content, "deleted": msg.deleted_at is not None},
            }
        )
    return out


async def resolve_report(
    session: AsyncSession, report_id: int, status: ReportStatus, by_user_id: int, now: datetime
) -> None:
    report = await session.get(Report, report_id)
    if report is None:
        raise NotFoundError(f"no report with id {report_id}")
    report.status, report.resolved_by_id, report.resolved_at = status, by_user_id, now
    await session.flush()


async def get_report(session: AsyncSession, report_id: int) -> Report | None:
    return await session.get(Report, report_id)


async def moderated_channel_ids(
    session: AsyncSession, user_id: int, *, is_admin: bool
) -> list[int]:
    """Channels whose reports the user may see: those they own or moderate (all, for an
    admin)."""
    q = select(Channel.id)
    if not is_admin:
        q = q.outerjoin(
            ChannelModerator,
            (ChannelModerator.channel_id == Channel.id) & (ChannelModerator.user_id == user_id),
        ).where(or_(Channel.owner_id == user_id, ChannelModerator.user_id == user_id))
    return list((await session.scalars(q)).all())
