"""``videosite-web [--host H] [--port P]``: the web server under uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videosite-web", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--streams", default=None, help="streams URL (default: configured)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(args.streams), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
