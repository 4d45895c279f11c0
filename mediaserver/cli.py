"""The ``aethex`` command line (also ``python -m mediaserver``).

Contract (see DESIGN.md): ``serve``, ``db upgrade``, ``user create``, ``channel create``,
``token create``; ``--config PATH`` (or ``AETHEX_CONFIG``) anywhere. Every command but ``serve``
migrates the database first, so each works on a fresh data directory. Failures print one line
to stderr, ``aethex: error: ...``, and exit 2 for bad input or settings, 1 for anything else;
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, NoReturn, TextIO

from mediaserver.settings import Settings, SettingsError, load_settings, parse_ladder

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report in one line; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def _add_config(parser: argparse.ArgumentParser, top_level: bool) -> None:
    # Sub-parsers use SUPPRESS so an absent --config after the subcommand does not overwrite
    # one given before it.
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None if top_level else argparse.SUPPRESS,
        help="TOML settings file (default: $AETHEX_CONFIG, else built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aethex", description="AeThex Live: self-hosted live streaming server."
    )
    _add_config(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the server (RTMP ingest, HLS, web, chat)")
    _add_config(serve, top_level=False)
    # Cluster (issue 15): each overrides its [cluster] setting, validated with the rest.
    serve.add_argument(
        "--role",
        choices=("all", "origin", "web"),
        help="all: everything in one process (default); origin: RTMP ingest, transcoding, "
        "live HLS; web: pages, API, chat, VOD (cluster.role)",
    )
    serve.add_argument("--node-id", metavar="ID", help="this node's name (cluster.node_id)")
    serve.add_argument(
        "--advertise-url",
        metavar="URL",
        help="the URL other nodes reach this one at (cluster.advertise_url)",
    )
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database maintenance")
    _add_config(db, top_level=False)
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_upgrade = db_commands.add_parser("upgrade", help="apply database migrations")
    _add_config(db_upgrade, top_level=False)
    db_upgrade.set_defaults(handler=cmd_db_upgrade)

    user = commands.add_parser("user", help="manage users")
    _add_config(user, top_level=False)
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    user_create = user_commands.add_parser(
        "create", help="create a user (the first user ever created is an admin)"
    )
    _add_config(user_create, top_level=False)
    user_create.add_argument("username", metavar="USERNAME")
    user_create.add_argument("--email", required=True, metavar="EMAIL")
    user_create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (otherwise the account has no password)",
    )
    user_create.add_argument("--admin", action="store_true", help="make the user an admin")
    user_create.set_defaults(handler=cmd_user_create)

    channel = commands.add_parser("channel", help="manage channels")
    _add_config(channel, top_level=False)
    channel_commands = channel.add_subparsers(
        dest="channel_command", metavar="ACTION", required=True
    )
    channel_create = channel_commands.add_parser(
        "create", help="create a channel and print its stream key"
    )
    _add_config(channel_create, top_level=False)
    channel_create.add_argument("--owner", required=True, metavar="USERNAME")
    channel_create.add_argument("--slug", required=True, metavar="SLUG")
    channel_create.add_argument("--title", metavar="TITLE")
    channel_create.add_argument("--json", action="store_true", help="print one JSON object")
    channel_create.set_defaults(handler=cmd_channel_create)

    channel_ladder = channel_commands.add_parser(
        "ladder", help="show or set a channel's own transcoding ladder"
    )
    channel_ladder.add_argument("slug", metavar="SLUG")
    group = channel_ladder.add_mutually_exclusive_group()
    group.add_argument(
        "--set",
        metavar="JSON",
        dest="ladder",
        help='rungs, e.g. \'[{"name": "720p", "height": 720, "fps": 30, "video_kbps": 3000}]\'',
    )
    group.add_argument(
        "--default", action="store_true", help="go back to the server's default ladder"
    )
    channel_ladder.set_defaults(handler=cmd_channel_ladder)

    token = commands.add_parser("token", help="manage API tokens")
    _add_config(token, top_level=False)
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    token_create = token_commands.add_parser(
        "create", help="create an API token for Authorization: Bearer"
    )
    _add_config(token_create, top_level=False)
    token_create.add_argument("username", metavar="USERNAME")
    token_create.add_argument("--json", action="store_true", help="print one JSON object")
    token_create.set_defaults(handler=cmd_token_create)
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _safe_url(url: str) -> str:
    """The URL with any password masked, for error messages."""
    try:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - SQLAlchemy: see _migrate

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _migrate(settings: Settings) -> str:
    # SQLAlchemy and the storage package take ~0.6 s to import: the CLI loads them only once
    # a command needs the database, so --help, usage and settings errors answer at once.
    from storage import StorageError, upgrade  # noqa: PLC0415 - see above

    url = settings.effective_database_url
    try:
        upgrade(url)
    except (StorageError, SettingsError):
        raise
    except ModuleNotFoundError as exc:
        raise CliError(
            f"database {_safe_url(url)}: driver not installed ({exc.name}); use "
            "sqlite+aiosqlite:// or postgresql+asyncpg://",
            EXIT_USAGE,
        ) from exc
    except Exception as exc:
        raise CliError(f"cannot migrate database {_safe_url(url)}: {_describe(exc)}") from exc
    return url


def _with_session(url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(session)`` in one transaction, committed when it returns."""
    from storage import Database  # noqa: PLC0415 - SQLAlchemy: see _migrate

    async def run() -> Any:
        db = Database(url)
        await db.connect()
        try:
            async with db.session() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await db.dispose()

    return asyncio.run(run())


def _print_json(obj: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")


# -- commands --------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    # The flags win over the file and the environment: they go in as the environment's
    # AETHEX_CLUSTER__* names, so validation (a role other than all needs PostgreSQL and
    # Redis) judges the settings the process would really run with.
    flags = {
        "AETHEX_CLUSTER__ROLE": args.role,
        "AETHEX_CLUSTER__NODE_ID": args.node_id,
        "AETHEX_CLUSTER__ADVERTISE_URL": args.advertise_url,
    }
    env = {**os.environ, **{k: v for k, v in flags.items() if v is not None}}
    settings = load_settings(args.config, env=env)
    _migrate(settings)
    from mediaserver.app import run  # noqa: PLC0415 - PyAV, aiohttp, webapp: for serve only

    run(settings)
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage.db import head_revision  # noqa: PLC0415 - SQLAlchemy: see _migrate

    settings = _settings(args)
    _migrate(settings)
    print(f"database is at revision {head_revision()}")
    return EXIT_OK


def _read_password(stream: TextIO) -> str:
    if stream.isatty():
        raise CliError(
            "--password-stdin expects the password piped in, e.g. "
            '`printf %s "$PASSWORD" | aethex user create ...`',
            EXIT_USAGE,
        )
    password = stream.read()
    # Drop the newline `echo` adds; every other character is part of the password.
    if password.endswith("\r\n"):
        password = password[:-2]
    elif password.endswith("\n"):
        password = password[:-1]
    if not password:
        raise CliError("--password-stdin: no password on standard input", EXIT_USAGE)
    return password


def cmd_user_create(args: argparse.Namespace) -> int:
    from storage import queries  # noqa: PLC0415 - SQLAlchemy: see _migrate

    settings = _settings(args)
    password = _read_password(sys.stdin) if args.password_stdin else None
    url = _migrate(settings)

    async def work(session: Any) -> tuple[str, bool]:
        first = await queries.count_users(session) == 0
        user = await queries.create_user(
            session, args.username, args.email, password, is_admin=args.admin or first
        )
        return user.username, user.is_admin

    username, is_admin = _with_session(url, work)
    role = "admin" if is_admin else "user"
    note = "" if password is not None else " (no password set)"
    print(f"created {role} {username!r}{note}")
    return EXIT_OK


def cmd_channel_create(args: argparse.Namespace) -> int:
    from storage import queries  # noqa: PLC0415 - SQLAlchemy: see _migrate

    settings = _settings(args)
    url = _migrate(settings)

    async def work(session: Any) -> dict[str, Any]:
        channel = await queries.create_channel(session, args.owner, args.slug, args.title)
        return {
            "id": channel.id,
            "slug": channel.slug,
            "title": channel.name,
            "owner": args.owner,
            "stream_key": channel.stream_key,
        }

    info = _with_session(url, work)
    rtmp_url = settings.rtmp_public_url
    info["rtmp_url"] = rtmp_url
    info["publish_url"] = f"{rtmp_url}/{info['stream_key']}"
    rtmps_url = settings.rtmps_public_url
    if rtmps_url:  # RTMPS on (rtmp.tls_port)
        info["rtmps_url"] = rtmps_url
        info["rtmps_publish_url"] = f"{rtmps_url}/{info['stream_key']}"
    if args.json:
        _print_json(info, sys.stdout)
        return EXIT_OK
    print(
        f'Created channel {info["slug"]!r} (id {info["id"]}, "{info["title"]}") '
        f"owned by {info['owner']!r}.\n"
        f"\n"
        f"OBS: Settings > Stream > Service: Custom\n"
        f"  Server:     {rtmp_url}\n"
        f"  Stream Key: {info['stream_key']}\n"
        + (f"  (over TLS: Server {rtmps_url})\n" if rtmps_url else "")
        + f"\n"
        f"ffmpeg/other encoders publish to:\n"
        f"  {info['publish_url']}\n"
        f"\n"
        f"Keep the stream key secret: anyone holding it can broadcast on this channel."
    )
    return EXIT_OK


def cmd_channel_ladder(args: argparse.Namespace) -> int:
    """Show, set or clear a channel's ladder; it applies from the channel's next stream."""
    from storage import queries  # noqa: PLC0415 - SQLAlchemy: see _migrate

    settings = _settings(args)
    url = _migrate(settings)
    new: list[dict[str, Any]] | None = None
    if args.ladder is not None:
        new = [asdict(r) for r in parse_ladder(args.ladder, "--set")]

    async def work(session: Any) -> list[dict[str, Any]] | None:
        channel = await queries.get_channel_by_slug(session, args.slug)
        if channel is None:
            raise CliError(f"no channel {args.slug!r}")
        if args.ladder is not None or args.default:
            channel.ladder = new
        return channel.ladder

    ladder = _with_session(url, work)
    source = "channel" if ladder else "server default"
    rungs = ladder or [asdict(r) for r in settings.transcode.ladder]
    _print_json({"slug": args.slug, "source": source, "ladder": rungs}, sys.stdout)
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    from storage import queries  # noqa: PLC0415 - SQLAlchemy: see _migrate

    settings = _settings(args)
    url = _migrate(settings)

    async def work(session: Any) -> str:
        return await queries.create_api_token(session, args.username)

    token = _with_session(url, work)
    if args.json:
        _print_json({"token": token, "username": args.username}, sys.stdout)
    else:
        print(token)
        print(
            f"API token for {args.username!r}; shown only once. "
            "Send it as `Authorization: Bearer TOKEN`.",
            file=sys.stderr,
        )
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------


def _fail(message: str, status: int) -> NoReturn:
    print(f"aethex: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SettingsError as exc:
        _fail(str(exc), EXIT_USAGE)
    except CliError as exc:
        _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        _fail(_describe(exc), _status_for(exc))


def _status_for(exc: BaseException) -> int:
    from storage.errors import ValidationError  # noqa: PLC0415 - SQLAlchemy: see _migrate

    return EXIT_USAGE if isinstance(exc, ValidationError) else EXIT_FAILURE


def _describe(exc: BaseException) -> str:
    """One line for an unexpected failure: storage errors as written, others by type."""
    from storage.errors import StorageError  # noqa: PLC0415 - SQLAlchemy: see _migrate

    if isinstance(exc, StorageError):
        return str(exc)
    try:
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError  # noqa: PLC0415 - see _migrate
    except ImportError:  # pragma: no cover - sqlalchemy is a hard dependency
        DBAPIError = SQLAlchemyError = ()  # type: ignore[assignment,misc]
    if isinstance(exc, DBAPIError):
        return f"database error: {exc.orig}".splitlines()[0]
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {exc}".splitlines()[0]
    if isinstance(exc, OSError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
