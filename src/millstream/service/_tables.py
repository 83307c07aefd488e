"""``ctx.tables``: the platform's tables as a service handler sees them.

A production service reads and writes tables by their names. A shadow version (``--shadow
v2``) gets its own namespace — every table name becomes ``<name>.shadow.v2`` — so it cannot
disturb the tables production serves from.
"""

from __future__ import annotations

from collections.abc import Sequence

from millstream.service._shadow import is_shadow, shadow_table
from millstream.tables._base import Table, Tables

__all__ = ["ServiceTables"]


class ServiceTables:
    """Tables by name, in the service's namespace."""

    def __init__(self, tables: Tables, shadow: str | None = None) -> None:
        self.backend = tables
        self._shadow = shadow

    def name(self, name: str) -> str:
        """The backend name of table ``name`` for this service."""
        return name if not self._shadow else shadow_table(name, self._shadow)

    def table(self, name: str) -> Table:
        return self.backend.table(self.name(name))

    def ensure_table(self, name: str, *, indexes: Sequence[str] = ()) -> Table:
        return self.backend.ensure_table(self.name(name), indexes=indexes)

    def list_tables(self) -> list[str]:
        """This namespace's tables, by their names in it."""
        names = self.backend.list_tables()
        if not self._shadow:
            return [n for n in names if not is_shadow(n)]
        suffix = shadow_table("", self._shadow)
        return [n[:-len(suffix)] for n in names if n.endswith(suffix)]
