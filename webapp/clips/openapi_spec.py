"""The clips API's OpenAPI fragment (``webapp.openapi`` merges it)."""

from __future__ import annotations

from typing import Any

from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA

CLIP_ID_PARAM: dict[str, Any] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The clip's public id (its link).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
}
_CLIP = {"$ref": "#/components/schemas/Clip"}
_AUTH = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_RATE = {"429": error_response("Too many clips made by this user lately (clips.rate_limit)")}
_RANGE_PROPS = {
    "start": {"type": "number", "description": "Seconds on the source broadcast's timeline."},
    "end": {"type": "number", "description": "Seconds on the source broadcast's timeline."},
}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Clip": {
        "type": "object",
        "required": ["id", "title", "status", "source", "visibility", "channel", "start", "end"],
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": ["draft", "processing", "ready", "failed"]},
            "source": {"type": "string", "enum": ["live", "vod"]},
            "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
            "channel": {
                "type": "object",
                "required": ["slug", "name", "url"],
                "properties": {
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "url": {"type": "string"},
                },
            },
            "clipper": {
                "type": ["object", "null"],
                "properties": {"username": {"type": "string"}, "name": {"type": "string"}},
            },
            **_RANGE_PROPS,
            "duration": _NUM_OR_NULL,
            "views": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string", "format": "date-time"},
            "published_at": {"type": ["string", "null"], "format": "date-time"},
            "url": {"type": "string"},
            "embed_url": {"type": "string"},
            "edit_url": _STR_OR_NULL,
            "hls_url": _STR_OR_NULL,
            "mp4_url": _STR_OR_NULL,
            "thumbnail_url": _STR_OR_NULL,
            "error": _STR_OR_NULL,
            "range": {
                "type": "object",
                "description": "A draft's captured range: where start and end may go.",
                "properties": _RANGE_PROPS,
            },
        },
    }
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/clips": {
        "parameters": [SLUG_PARAM],
        "post": {
            "summary": "Clip the live stream: its last seconds become a draft to trim and publish",
            "tags": ["clips"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "seconds": {
                            "type": "number",
                            "description": "How much to capture (default and most: "
                            "clips.live_seconds).",
                        },
                        "title": {"type": "string", "maxLength": 140},
                    },
                }
            ),
            "responses": {
                "201": json_response("The draft", _CLIP),
                "404": {"$ref": "#/components/responses/NotFound"},
                "409": error_response("The channel is not live, or has no media yet"),
                **_AUTH,
                **_RATE,
            },
        },
        "get": {
            "summary": "The channel's top clips by views (published in the last 7 days, or ever)",
            "tags": ["clips"],
            "parameters": [
                {
                    "name": "period",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["7d", "all"]},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
            ],
            "responses": {
                "200": json_response(
                    "Clips, most viewed first",
                    {
                        "type": "object",
                        "required": ["period", "clips"],
                        "properties": {
                            "period": {"type": "string"},
                            "clips": {"type": "array", "items": _CLIP},
                        },
                    },
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
    "/api/videos/{ref}/clips": {
        "parameters": [
            {
                "name": "ref",
                "in": "path",
                "required": True,
                "description": STREAM_REF_DESCRIPTION,
                "schema": STREAM_REF_SCHEMA,
            }
        ],
        "post": {
            "summary": "Clip a past broadcast (its owner; viewers when the channel allows it); "
            "the cut runs in the background (status processing, then ready)",
            "tags": ["clips"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["start", "end"],
                    "properties": {**_RANGE_PROPS, "title": {"type": "string", "maxLength": 140}},
                }
            ),
            "responses": {
                "202": json_response("The clip, being cut", _CLIP),
                "404": {"$ref": "#/components/responses/NotFound"},
                **_AUTH,
                **_RATE,
            },
        },
    },
    "/api/clips/{id}": {
        "parameters": [CLIP_ID_PARAM],
        "get": {
            "summary": "One clip",
            "tags": ["clips"],
            "responses": {
                "200": json_response("The clip", _CLIP),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
        "patch": {
            "summary": "Retitle a clip; trim and publish a draft (the clipper, the "
            "channel's owner)",
            "tags": ["clips"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        **_RANGE_PROPS,
                        "title": {"type": "string", "maxLength": 140},
                        "publish": {"type": "boolean"},
                    },
                }
            ),
            "responses": {
                "200": json_response("The clip", _CLIP),
                "404": {"$ref": "#/components/responses/NotFound"},
                "409": error_response("Not a draft, or the draft changed or is gone"),
                **_AUTH,
            },
        },
        "delete": {
            "summary": "Delete a clip (the clipper, the channel's owner and moderators)",
            "tags": ["clips"],
            "responses": {
                "200": json_response(
                    "Deleted",
                    {
                        "type": "object",
                        "required": ["deleted"],
                        "properties": {"deleted": {"type": "boolean"}},
                    },
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
                **_AUTH,
            },
        },
    },
}
