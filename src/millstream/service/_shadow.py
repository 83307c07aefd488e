"""How a shadow version is named: its consumer group, the streams it writes, its tables.

A shadow version ``v2`` of a service (``millstream run MODULE:APP SERVICE --shadow v2``) reads
the same input as production in its own group, writes every output to a stream of its own
and every table under a name of its own, so production never sees it. All three names are
production's name with ``.shadow.<version>`` appended:

======================  ====================  ===============================
what                    production            shadow ``v2``
======================  ====================  ===============================
consumer group          ``shop.billing``      ``shop.billing.shadow.v2``
output stream           ``invoices``          ``invoices.shadow.v2``
table (``ctx.tables``)  ``totals``            ``totals.shadow.v2``
======================  ====================  ===============================

The shadow's file objects follow from its group (``ctx.files`` writes under
``<group>/…``), and its retry stream from its group (``millstream.retry.<group>``).
This module is the only place that spells the suffix; everything else calls it.
"""

from __future__ import annotations

__all__ = ["SHADOW_INFIX", "is_shadow", "production_name", "shadow_group", "shadow_stream",
           "shadow_suffix", "shadow_table"]

#: What separates production's name from the shadow version in every shadow name.
SHADOW_INFIX = ".shadow."


def shadow_suffix(version: str) -> str:
    """What a shadow ``version`` appends to each of production's names: ``.shadow.<version>``."""
    return f"{SHADOW_INFIX}{version}"


def shadow_group(group: str, version: str) -> str:
    """The consumer group of shadow ``version`` of the service whose group is ``group``."""
    return group + shadow_suffix(version)


def shadow_stream(stream: str, version: str) -> str:
    """Where shadow ``version`` writes what production writes to ``stream``."""
    return stream + shadow_suffix(version)


def shadow_table(table: str, version: str) -> str:
    """The name under which shadow ``version`` keeps what production keeps in ``table``."""
    return table + shadow_suffix(version)


def is_shadow(name: str) -> bool:
    """True if ``name`` (a group, stream or table) belongs to a shadow version."""
    return SHADOW_INFIX in name


def production_name(name: str) -> str:
    """The production name a shadow name was made from (``name`` itself if it is not one)."""
    return name.rsplit(SHADOW_INFIX, 1)[0] if is_shadow(name) else name
