"""The video site's web server: the upload API, the status API and the pages.

``create_app(...)`` builds the FastAPI app; ``millstream-video web`` (or ``python -m
videosite.web``) runs it with uvicorn. Modules: ``settings`` (limits and the token),
``upload`` (a multipart body streamed into the file store), ``api`` (JSON routes),
``pages`` (HTML routes and media), ``ranges`` (byte ranges), ``site`` (the platform handle
the routes share).
"""

from __future__ import annotations

from .app import create_app
from .settings import WebSettings

__all__ = ["WebSettings", "create_app"]
