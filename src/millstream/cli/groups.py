"""``millstream groups``: list consumer groups, show their members and lag, reset offsets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import click

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.errors import NotFoundError

__all__ = ["ResetParam", "groups_group"]

ResetTarget = Literal["earliest", "latest"] | int


if TYPE_CHECKING:
    _ResetTargetBase = click.ParamType[ResetTarget]
else:  # ParamType is generic only in recent click; stay importable with older ones
    _ResetTargetBase = click.ParamType


class ResetParam(_ResetTargetBase):
    """``--to``: ``earliest``, ``latest`` or an offset."""

    name = "earliest|latest|OFFSET"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> ResetTarget:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text in ("earliest", "beginning"):
            return "earliest"
        if text in ("latest", "end"):
            return "latest"
        if text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not 'earliest', 'latest' or an offset (an integer ≥ 0)",
                  param, ctx)


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
@click.argument("stream")
@click.option("--to", "target", type=ResetParam(), required=True,
              metavar="earliest|latest|OFFSET",
              help="The first retained record, the end (skip everything so far), or an "
                   "offset that every partition holds.")
@pass_state
def reset(state: CliState, group: str, stream: str, target: ResetTarget) -> None:
    """Set where GROUP next reads STREAM, in every partition.

    Stop the group's consumers first: a group with live members is refused.

    \b
    Example:
      millstream groups reset billing orders --to earliest
    """
    with open_streams(state) as streams:
        offsets = streams.admin().reset_offsets(group, stream, target)
    out = console()
    out.print(f"group {group} now reads {stream} from:")
    t = table(">Partition", ">Offset")
    for sp, offset in sorted(offsets.items()):
        t.add_row(str(sp.partition), str(offset))
    out.print(t)
