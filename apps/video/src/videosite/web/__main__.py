"""``python -m videosite.web``: the web server alone (``millstream-video web``)."""

from __future__ import annotations

import sys

from videosite.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["web", *sys.argv[1:]]))
