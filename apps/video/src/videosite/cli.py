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

__all__ = ["main"]


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, else VIDEOSITE_API_TOKEN; None (and why, on stderr) without either."""
    token: str | None = args.token or os.environ.get("VIDEOSITE_API_TOKEN")
    if not token:
        print(f"millstream-video {args.command}: set VIDEOSITE_API_TOKEN or pass --token "
              "(uploads need it)", file=sys.stderr)
    return token


def _serve(args: argparse.Namespace) -> int:
    from .inprocess import InProcessSite

    token = _token(args)
    if not token:
        return 2
    with InProcessSite(token=token, port=args.port) as site:
        print(f"serving {site.url}/ on streams {site.config.streams}; Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
                errors, site.errors = site.errors, []
                for error in errors:
                    print(f"service error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("stopping")
    return 0


def _web(args: argparse.Namespace) -> int:
    import uvicorn

    from .web import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(args.streams), host=args.host, port=args.port)
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
    web = commands.add_parser("web", help="the web server alone")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--streams", default=None, help="streams URL (default: configured)")
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
