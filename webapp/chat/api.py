"""Chat's JSON API: its route table. The handlers, each beside its OpenAPI fragment, live by
subject: messages_api.py (history, posting, deleting), moderation_api.py (chat settings,
moderators, bans, timeouts), blocks_api.py and reports_api.py; what they share is in
api_context.py.

Errors use the project's ``{"error": {"code", "message"}}`` shape; a refused send carries the
same ``code`` a socket would get in its ``chat:error``. Cookie callers need ``X-CSRF-Token`` on
state-changing calls (the identity middleware checks it); Bearer callers do not.
"""

from __future__ import annotations

from aiohttp import web

from . import blocks_api, messages_api, moderation_api, reports_api


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/streams/{stream_id}/messages", messages_api.stream_messages)
    r.add_post("/api/messages", messages_api.post_message)
    r.add_delete("/api/messages/{message_id}", messages_api.delete_message)
    r.add_get("/api/channels/{slug}/chat/settings", moderation_api.get_settings)
    r.add_patch("/api/channels/{slug}/chat/settings", moderation_api.patch_settings)
    r.add_get("/api/channels/{slug}/moderators", moderation_api.list_moderators)
    r.add_post("/api/channels/{slug}/moderators", moderation_api.add_moderator)
    r.add_delete("/api/channels/{slug}/moderators/{user_id}", moderation_api.remove_moderator)
    r.add_get("/api/channels/{slug}/bans", moderation_api.list_bans)
    r.add_post("/api/channels/{slug}/bans", moderation_api.add_ban)
    r.add_delete("/api/channels/{slug}/bans/{user_id}", moderation_api.remove_ban)
    r.add_post("/api/channels/{slug}/timeouts", moderation_api.add_timeout)
    r.add_delete("/api/channels/{slug}/timeouts/{user_id}", moderation_api.remove_timeout)
    r.add_get("/api/blocks", blocks_api.list_blocks)
    r.add_post("/api/users/{user_id}/block", blocks_api.block_user)
    r.add_delete("/api/users/{user_id}/block", blocks_api.unblock_user)
    r.add_post("/api/reports", reports_api.create_report)
    r.add_get("/api/reports", reports_api.list_reports)
    r.add_post("/api/reports/{report_id}/resolve", reports_api.resolve_report)
