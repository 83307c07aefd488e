"""``millstream groups``: list consumer groups, show their members and lag, reset offsets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.errors import InvalidRequestError, NotFoundError
from millstream.operations._groups import ResetTarget, parse_reset_target, reset_group

__all__ = ["ResetParam", "groups_group"]


if TYPE_CHECKING:
    _ResetTargetBase = click.ParamType[ResetTarget]
else:  # ParamType is generic only in recent click; stay importable with older ones
    _ResetTargetBase = click.ParamType


class ResetParam(_ResetTargetBase):
    """``--to``: ``earliest``/``beginning``, ``latest``/``end``, an offset, or a time (an ISO
    time, or a span ago such as ``10m``, ``2h``, ``1d``)."""

    name = "beginning|end|OFFSET|TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> ResetTarget:
        if isinstance(value, int | tuple):
            return value
        try:
            return parse_reset_target(str(value))
        except InvalidRequestError as exc:
            self.fail(str(exc), param, ctx)


@click.group("groups")
def groups_group() -> None:
    """Inspect consumer groups and reset where they read from.

    \b
    Example:
      millstream groups list
      millstream groups describe billing
    """


@groups_group.command("list")
@pass_state
def list_groups(state: CliState) -> None:
    """List consumer groups with their live members and total lag.

    \b
    Example:
      millstream groups list
    """
    with open_streams(state) as streams:
        admin = streams.admin()
        infos = [admin.describe_group(name) for name in admin.list_groups()]
    if not infos:
        click.echo("no consumer groups yet; one appears when a consumer joins or commits "
                   "(e.g. millstream tail STREAM --group GROUP)", err=True)
        return
    t = table("Group", ">Members", "Streams", ">Lag")
    for info in infos:
        names = sorted({p.stream for p in info.partitions})
        t.add_row(info.name, str(len(info.members)), ", ".join(names) or "-", str(info.lag))
    console().print(t)


@groups_group.command("describe")
@click.argument("group")
@pass_state
def describe(state: CliState, group: str) -> None:
    """Show GROUP's live members and, per partition, committed offset, end, lag and owner.

    Lag is the number of records between the committed offset and the end.

    \b
    Example:
      millstream groups describe billing
    """
    with open_streams(state) as streams:
        info = streams.admin().describe_group(group)
    if not info.members and not info.partitions:
        raise NotFoundError(
            f"group {group!r} has no live members and no committed offsets; "
            "`millstream groups list` shows the groups there are"
        )
    out = console()
    out.print(f"group {info.name}: {len(info.members)} live member(s), total lag {info.lag}")
    if info.members:
        members = table("Member", "Client", "Partitions", title="members")
        for m in info.members:
            members.add_row(m.member_id, m.client, ", ".join(map(str, m.partitions)) or "-")
        out.print(members)
    parts = table("Stream", ">Partition", ">Committed", ">End", ">Lag", "Owner",
                  title="partitions")
    for p in info.partitions:
        parts.add_row(p.stream, str(p.partition),
                      str(p.committed) if p.committed is not None else "-",
                      str(p.end), str(p.lag), p.owner or "-")
    out.print(parts)


@groups_group.command("reset")
@click.argument("group")
@click.argument("stream", required=False)
@click.option("--to", "target", type=ResetParam(), required=True,
              metavar="beginning|end|OFFSET|TIME",
              help="The first retained record, the end (skip everything so far), an offset "
                   "every partition holds, or a time: ISO (2026-11-27T10:00) or a span ago "
                   "(30m, 2h, 1d) — the first record written at or after it.")
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="Reset only this partition of STREAM; the others keep their committed "
                   "offsets.")
@pass_state
def reset(state: CliState, group: str, stream: str | None, target: ResetTarget,
          partition: int | None) -> None:
    """Set where GROUP next reads STREAM (every stream it has read, if omitted).

    Stop the group's consumers first: a group with live members is refused. Resetting to the
    beginning lets a service re-read old records to rebuild its state.

    \b
    Example:
      millstream groups reset billing orders --to beginning
      millstream groups reset billing --to 2h
      millstream groups reset billing orders --partition 2 --to 1500
    """
    with open_streams(state) as streams:
        results = reset_group(streams, group, target, stream=stream, partition=partition)
    out = console()
    for name, offsets in results.items():
        out.print(f"group {group} now reads {name} from:")
        t = table(">Partition", ">Offset")
        for sp, offset in sorted(offsets.items()):
            t.add_row(str(sp.partition), str(offset))
        out.print(t)
