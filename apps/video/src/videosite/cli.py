"""``millstream-video``: the video site's command line.

* ``demo`` — the main job (what ``make demo`` runs): sample clips through every service, a
  summary, then the site until Ctrl-C.
* ``serve`` — every service and the web site in this process, on the configured platform,
  until Ctrl-C (one-machine use; in production run ``millstream up videosite.app:app`` and
  ``millstream-video web``).
* ``web`` — the web server alone.
* ``upload FILE --title T`` — upload a file to a running site through its HTTP API.

The platform comes from the usual configuration (``MILLSTREAM_STREAMS`` / ``_FILES`` /
``_TABLES`` or ``millstream.toml``); the API token from ``VIDEOSITE_API_TOKEN``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .web.server import ServerLimits

__all__ = ["main"]


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, else VIDEOSITE_API_TOKEN; None (and why, on stderr) without either."""
    token: str | None = args.token or os.environ.get("VIDEOSITE_API_TOKEN")
    if not token:
        print(f"millstream-video {args.command}: set VIDEOSITE_API_TOKEN or pass --token "
              "(uploads need it)", file=sys.stderr)
    return token


#: the server's limits as CLI flags: flag -> (ServerLimits field, type, help)
_LIMIT_FLAGS: dict[str, tuple[str, type, str]] = {
    "--max-connections": ("max_connections", int, "open connections; one more gets 503"),
    "--header-timeout": ("header_timeout_s", float, "seconds for a request line + headers"),
    "--min-body-rate": ("min_body_rate", int, "slowest request body, bytes/s (else 408)"),
    "--body-rate-window": ("body_rate_window_s", float, "seconds the body rate is averaged"),
    "--send-timeout": ("send_timeout_s", float, "seconds a response waits on a client not "
                       "reading it"),
    "--keep-alive": ("keep_alive_s", int, "seconds an idle connection is kept"),
    "--linger": ("linger_s", float, "seconds unread input is drained after a refusal"),
    "--linger-bytes": ("linger_bytes", int, "bytes of unread input drained after a refusal"),
}


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server limits (default: VIDEOSITE_* or built in)")
    for flag, (dest, kind, text) in _LIMIT_FLAGS.items():
        group.add_argument(flag, dest=dest, type=kind, default=None, help=text)


def _limits(args: argparse.Namespace) -> ServerLimits | None:
    """The server's limits: the environment's, then the flags given; None (and why, on
    stderr) when one is not valid."""
    from .web.server import ServerLimits

    for flag, (dest, _, _) in _LIMIT_FLAGS.items():
        value = getattr(args, dest)
        if value is not None and not value > 0:
            print(f"millstream-video {args.command}: {flag} must be above 0, not {value}",
                  file=sys.stderr)
            return None
    try:
        return ServerLimits.from_env(**{dest: getattr(args, dest)
                                        for dest, _, _ in _LIMIT_FLAGS.values()})
    except ValueError as exc:
        print(f"millstream-video {args.command}: {exc}", file=sys.stderr)
        return None


def _tuned(args: argparse.Namespace) -> bool:
    """``tune_allocator()`` before any thread starts; False (and why, on stderr) when its
    setting is not valid."""
    from ._allocator import tune_allocator

    try:
        tune_allocator()
    except ValueError as exc:
        print(f"millstream-video {args.command}: {exc}", file=sys.stderr)
        return False
    return True


def _serve(args: argparse.Namespace) -> int:
    from .inprocess import InProcessSite

    token = _token(args)
    if not token:
        return 2
    limits = _limits(args)
    if limits is None or not _tuned(args):
        return 2
    with InProcessSite(token=token, port=args.port, limits=limits) as site:
        print(f"serving {site.url}/ on streams {site.config.streams}; Ctrl-C to stop")
        shown = 0
        try:
            while True:
                time.sleep(1)
                errors = site.errors[shown:]
                shown += len(errors)
                for error in errors:
                    print(f"service error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("stopping")
    return 0


def _web(args: argparse.Namespace) -> int:
    from .web import create_app
    from .web.server import build_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limits = _limits(args)
    if limits is None or not _tuned(args):
        return 2
    build_server(create_app(args.streams), host=args.host, port=args.port, limits=limits).run()
    return 0


def _upload(args: argparse.Namespace) -> int:
    from .client import UploadFailed, UploadRefused, upload

    token = _token(args)
    if not token:
        return 2
    path = Path(args.file)
    if not path.is_file():
        print(f"millstream-video upload: {path} is not a file", file=sys.stderr)
        return 2
    try:
        video_id = upload(args.url, token, path, args.title or path.stem)
    except UploadRefused as refusal:
        print(f"refused ({refusal.status}): {refusal.reason}", file=sys.stderr)
        return 1
    except (UploadFailed, ValueError) as exc:
        print(f"millstream-video upload: {exc}", file=sys.stderr)
        return 1
    print(f"{video_id}  {args.url.rstrip('/')}/videos/{video_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="millstream-video",
                                     description="The video site's command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="sample clips through every service, then the site",
                        add_help=False)
    serve = commands.add_parser("serve", help="every service and the site in this process")
    serve.add_argument("--port", type=int, default=0, help="default: 8000 if free, else any")
    serve.add_argument("--token", help="API token (default: VIDEOSITE_API_TOKEN)")
    _add_limit_flags(serve)
    web = commands.add_parser("web", help="the web server alone")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--streams", default=None, help="streams URL (default: configured)")
    _add_limit_flags(web)
    send = commands.add_parser("upload", help="upload a file to a running site")
    send.add_argument("file")
    send.add_argument("--title", help="default: the file name without its suffix")
    send.add_argument("--url", default="http://127.0.0.1:8000", help="the site's base URL")
    send.add_argument("--token", help="API token (default: VIDEOSITE_API_TOKEN)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from .demo import main as demo

        return demo(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    run = {"serve": _serve, "web": _web, "upload": _upload}[args.command]
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
