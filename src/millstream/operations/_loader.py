"""Finding an app from a ``module:attribute`` reference, as the CLI commands take it."""

from __future__ import annotations

import importlib
import os
import sys

from millstream.errors import InvalidRequestError
from millstream.service._app import App

__all__ = ["load_app"]


def load_app(reference: str) -> App:
    """Import ``module:attribute`` (``attribute`` defaults to ``app``) and return the App.

    The current directory is put on ``sys.path`` first, so ``millstream run shop:app ...``
    finds ``./shop.py`` as ``python -m`` would."""
    module_name, _, attribute = reference.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise InvalidRequestError(
            f"app reference {reference!r} names no module; write module:app, e.g. shop:app"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise InvalidRequestError(
                f"module {module_name!r} of app reference {reference!r} was not found from "
                f"{cwd}; run from the directory that holds it or install its package"
            ) from exc
        raise
    found = getattr(module, attribute, None)
    if not isinstance(found, App):
        what = type(found).__name__ if found is not None else "missing"
        raise InvalidRequestError(
            f"{module_name}.{attribute} is {what}, not a millstream App; point at the App "
            f"object, e.g. {module_name}:app"
        )
    return found
