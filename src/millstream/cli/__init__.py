"""The ``millstream`` command line: one module per command group, wired up in ``main``.

This package is the command line, not an API: its modules change with the commands, and none
of their names is for import. What a command does is in the public packages it calls
(``millstream.streams``, ``.files``, ``.tables``, ``.operations``, ``.observe`` …).
"""

__all__: list[str] = []
