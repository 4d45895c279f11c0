"""OpenAPI fragments of the channel points and predictions routes (``api``, ``predictions``)."""

from __future__ import annotations

from typing import Any

from ..openapi import SLUG_PARAM, error_response, json_body, json_response

_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
}
_CONFLICT = {"409": error_response("Short of points, a cooldown, a limit, or a wrong state")}
_BAD = {"400": error_response("A missing or bad field")}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }


_INT = {"type": "integer"}
_STR = {"type": "string"}
_WHEN = {"type": ["string", "null"], "format": "date-time"}
_REWARD_FIELDS: dict[str, Any] = {
    "title": {"type": "string", "minLength": 1, "maxLength": 64},
    "cost": {"type": "integer", "minimum": 1},
    "prompt": {
        "type": "string",
        "maxLength": 200,
        "description": "Non-empty: viewers must type a text when redeeming (the prompt)",
    },
    "cooldown_seconds": {"type": "integer", "minimum": 0},
    "max_per_stream": {"type": "integer", "minimum": 0, "description": "0: no limit"},
    "max_per_user_per_stream": {"type": "integer", "minimum": 0, "description": "0: no limit"},
    "enabled": {"type": "boolean"},
}
_STAKE = {"type": ["object", "null"], "properties": {"outcome_id": _INT, "amount": _INT}}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "PointReward": _obj(
        list(_REWARD_FIELDS) + ["id", "cooling_until"],
        id=_INT,
        cooling_until=_WHEN,
        **_REWARD_FIELDS,
    ),
    "PointRedemption": _obj(
        ["id", "title", "cost", "text", "status", "user", "created_at"],
        id=_INT,
        reward_id={"type": ["integer", "null"]},
        title=_STR,
        cost=_INT,
        text=_STR,
        status={"type": "string", "enum": ["pending", "fulfilled", "refunded"]},
        user=_obj(["id", "username"], id=_INT, username=_STR),
        created_at={"type": "string", "format": "date-time"},
        resolved_at=_WHEN,
    ),
    "Prediction": _obj(
        ["id", "question", "status", "locks_at", "pool", "outcomes"],
        id=_INT,
        question=_STR,
        status={"type": "string", "enum": ["open", "locked", "resolved", "cancelled"]},
        locks_at={"type": "string", "format": "date-time"},
        created_at={"type": "string", "format": "date-time"},
        ended_at=_WHEN,
        winning_outcome_id={"type": ["integer", "null"]},
        pool=_INT,
        outcomes={
            "type": "array",
            "items": _obj(
                ["id", "title", "total", "stakers"], id=_INT, title=_STR, total=_INT, stakers=_INT
            ),
        },
    ),
}

_RATES = {
    "enabled": {"type": "boolean"},
    "watch_rate": {"type": "integer", "minimum": 0, "description": "Points per minute watched"},
    "follow_bonus": {"type": "integer", "minimum": 0, "description": "Extra per minute, followers"},
    "chat_bonus": {"type": "integer", "minimum": 0, "description": "Extra per minute, chatters"},
}
_CH = "/api/channels/{slug}"
_PRED = _CH + "/predictions/{prediction_id}"


def _post(summary: str, response: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["points"],
        "responses": {"200": json_response("Done", response), **_CONFLICT, **_ERRORS},
    }
    if body is not None:
        op["requestBody"] = json_body(body)
        op["responses"].update(_BAD)
    return op


_PRED_REPLY = _obj(["prediction"], prediction=_ref("Prediction"))

OPENAPI_PATHS: dict[str, Any] = {
    _CH + "/points": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "The channel's points: your balance (null when anonymous), the rewards "
            "you can redeem (all of them for the owner), the rates and the latest prediction",
            "tags": ["points"],
            "responses": {
                "200": json_response(
                    "Points",
                    _obj(
                        ["enabled", "balance", "rewards", "prediction"],
                        enabled={"type": "boolean"},
                        balance={"type": ["integer", "null"]},
                        rates=_obj([], **{k: v for k, v in _RATES.items() if k != "enabled"}),
                        rewards={"type": "array", "items": _ref("PointReward")},
                        prediction={"oneOf": [_ref("Prediction"), {"type": "null"}]},
                        my_stake=_STAKE,
                        can_moderate={"type": "boolean"},
                        heartbeat_interval={"type": "number"},
                    ),
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
    _CH + "/points/ledger": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "Your own ledger entries on the channel, newest first",
            "tags": ["points"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                }
            ],
            "responses": {
                "200": json_response(
                    "Entries",
                    _obj(
                        ["balance", "entries"],
                        balance=_INT,
                        entries={"type": "array", "items": _obj(["id", "amount", "kind"])},
                    ),
                ),
                "401": {"$ref": "#/components/responses/Unauthenticated"},
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
    _CH + "/points/settings": {
        "parameters": [SLUG_PARAM],
        "put": {
            "summary": "Set the channel's point rates (owner or admin)",
            "tags": ["points"],
            "requestBody": json_body({"type": "object", "properties": _RATES}),
            "responses": {"200": json_response("Rates", _obj([], **_RATES)), **_BAD, **_ERRORS},
        },
    },
    "/api/points/heartbeat": {
        "post": {
            "summary": "The logged-in player's heartbeat: credited only when this login "
            "session fetched the channel's media within points.media_window seconds",
            "tags": ["points"],
            "requestBody": json_body(_obj(["slug"], slug=_STR)),
            "responses": {
                "200": json_response(
                    "Answered",
                    _obj(["credited"], credited={"type": "boolean"}, next_in={"type": "number"}),
                ),
                **_BAD,
                "401": {"$ref": "#/components/responses/Unauthenticated"},
                "409": error_response("The channel is not live"),
            },
        },
    },
    _CH + "/rewards": {
        "parameters": [SLUG_PARAM],
        "post": {
            "summary": "Add a reward (owner or admin)",
            "tags": ["points"],
            "requestBody": json_body(_obj(["title", "cost"], **_REWARD_FIELDS)),
            "responses": {
                "201": json_response("Created", _obj(["reward"], reward=_ref("PointReward"))),
                **_BAD,
                **_ERRORS,
            },
        },
    },
    _CH + "/rewards/{reward_id}": {
        "parameters": [SLUG_PARAM, _id("reward_id")],
        "patch": {
            "summary": "Change a reward (owner or admin)",
            "tags": ["points"],
            "requestBody": json_body({"type": "object", "properties": _REWARD_FIELDS}),
            "responses": {
                "200": json_response("Changed", _obj(["reward"], reward=_ref("PointReward"))),
                **_BAD,
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete a reward; its pending redemptions are refunded (owner or admin)",
            "tags": ["points"],
            "responses": {
                "200": json_response("Deleted", _obj(["refunded"], refunded=_INT)),
                **_ERRORS,
            },
        },
    },
    _CH + "/rewards/{reward_id}/redeem": {
        "parameters": [SLUG_PARAM, _id("reward_id")],
        "post": {
            "summary": "Spend points on a reward (the text is required when it has a prompt)",
            "tags": ["points"],
            "requestBody": json_body({"type": "object", "properties": {"text": _STR}}),
            "responses": {
                "201": json_response(
                    "Redeemed",
                    _obj(
                        ["redemption", "balance"],
                        redemption=_ref("PointRedemption"),
                        balance=_INT,
                    ),
                ),
                **_BAD,
                **_CONFLICT,
                **_ERRORS,
            },
        },
    },
    _CH + "/redemptions": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "The redemption queue, newest first (owner, moderators, admins)",
            "tags": ["points"],
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["pending", "fulfilled", "refunded"]},
                },
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": json_response(
                    "Redemptions",
                    _obj(
                        ["redemptions"],
                        redemptions={"type": "array", "items": _ref("PointRedemption")},
                    ),
                ),
                **_ERRORS,
            },
        },
    },
    **{
        _CH + f"/redemptions/{{redemption_id}}/{verb}": {
            "parameters": [SLUG_PARAM, _id("redemption_id")],
            "post": _post(
                summary,
                _obj(["redemption"], redemption=_ref("PointRedemption")),
            ),
        }
        for verb, summary in (
            ("fulfil", "Mark a pending redemption done (owner, moderators, admins)"),
            ("refund", "Refund a pending redemption: its points go back (owner, moderators)"),
        )
    },
    _CH + "/predictions": {
        "parameters": [SLUG_PARAM],
        "post": {
            "summary": "Start a prediction (owner, moderators, admins); one at a time per channel",
            "tags": ["points"],
            "requestBody": json_body(
                _obj(
                    ["question", "outcomes"],
                    question={"type": "string", "minLength": 1, "maxLength": 140},
                    outcomes={
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 10,
                        "items": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                    window_seconds={"type": "integer", "description": "The staking window"},
                )
            ),
            "responses": {
                "201": json_response("Started", _PRED_REPLY),
                **_BAD,
                **_CONFLICT,
                **_ERRORS,
            },
        },
    },
    _PRED + "/stake": {
        "parameters": [SLUG_PARAM, _id("prediction_id")],
        "post": _post(
            "Stake points on one outcome while the window is open",
            _obj(
                ["prediction", "my_stake", "balance"],
                prediction=_ref("Prediction"),
                my_stake=_STAKE,
                balance=_INT,
            ),
            _obj(
                ["outcome_id", "amount"], outcome_id=_INT, amount={"type": "integer", "minimum": 1}
            ),
        ),
    },
    _PRED + "/lock": {
        "parameters": [SLUG_PARAM, _id("prediction_id")],
        "post": _post("Stop taking stakes (owner, moderators, admins)", _PRED_REPLY),
    },
    _PRED + "/resolve": {
        "parameters": [SLUG_PARAM, _id("prediction_id")],
        "post": _post(
            "The outcome that happened: its backers share the pool (owner, moderators, admins)",
            _PRED_REPLY,
            _obj(["outcome_id"], outcome_id=_INT),
        ),
    },
    _PRED + "/cancel": {
        "parameters": [SLUG_PARAM, _id("prediction_id")],
        "post": _post("Call it off: every stake is refunded (owner, moderators)", _PRED_REPLY),
    },
}
