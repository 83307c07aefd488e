"""``millstream exceptions``: list, show and replay the records services gave up on."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import click

from millstream._wellknown import EXCEPTIONS
from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.console._decode import fields
from millstream.errors import NotFoundError
from millstream.operations._replay import list_exceptions, replay, replayed_ids
from millstream.service._shadow import is_shadow

__all__ = ["exceptions_group", "parse_since"]

_SPAN = re.compile(r"(\d+)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> int | None:
    """``10m``, ``2h``, ``1d`` ago, or an ISO time, as epoch milliseconds."""
    if not text:
        return None
    match = _SPAN.fullmatch(text.strip())
    if match:
        return int((time.time() - int(match[1]) * _UNIT_S[match[2]]) * 1000)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a span like 10m / 2h / 1d nor an ISO time like "
            "2026-11-27T10:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def _epoch_s(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _ensure(state: CliState) -> None:
    with open_streams(state) as streams:
        if EXCEPTIONS not in streams.admin().list_streams():
            raise NotFoundError(
                f"there is no {EXCEPTIONS} stream yet: no service has run on "
                f"{streams.url}, so none has failed")


@click.group("exceptions")
def exceptions_group() -> None:
    """The records services gave up on, and re-submitting them after a fix.

    \b
    Example:
      millstream exceptions list --service billing
      millstream exceptions show 12
      millstream exceptions replay 12 13
    """


@exceptions_group.command("list")
@click.option("--service", help="Only this service's failures.")
@click.option("--group", help="Only this consumer group's failures.")
@click.option("--since", metavar="SPAN|TIME", help="Only newer ones: 10m, 2h, 1d or ISO time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Show at most this many (the newest).")
@pass_state
def list_command(state: CliState, service: str | None, group: str | None, since: str | None,
                 limit: int) -> None:
    """List failures: id, time, service (a shadow's as "billing (shadow v2)"), input position,
    stage, error, attempts, replayed.

    \b
    Example:
      millstream exceptions list --service billing --since 1h
    """
    _ensure(state)
    with open_streams(state) as streams:
        found = list_exceptions(streams, group=group, service=service,
                                since=_epoch_s(parse_since(since)))
        shown = found[-limit:]
        replayed: dict[str, set[int]] = {}
        for failure in shown:
            if failure.group not in replayed:
                replayed[failure.group] = replayed_ids(streams, failure.group)
    if not shown:
        click.echo("no exceptions match", err=True)
        return
    t = table(">Id", "Time", "Service", "Input", "Stage", "Error", ">Attempts", "Replayed")
    for f in shown:
        when = dt.datetime.fromtimestamp(int(f.document.get("time_ms", 0)) / 1000)
        position = f"{f.input.get('stream')}[{f.input.get('partition')}]@{f.input.get('offset')}"
        message = f.message if len(f.message) <= 80 else f.message[:77] + "..."
        version = f.document.get("version")  # a shadow's failures are its own, not production's
        service = f"{f.service} (shadow {version})" if is_shadow(f.group) else f.service
        t.add_row(str(f.id), when.strftime("%Y-%m-%d %H:%M:%S"), service, position,
                  str(f.document.get("stage", "")), f"{f.error_type.rpartition('.')[2]}: "
                  f"{message}", str(f.attempts), "yes" if f.id in replayed[f.group] else "no")
    console().print(t)
    if len(found) > len(shown):
        click.echo(f"({len(found) - len(shown)} older not shown; raise --limit)", err=True)


@exceptions_group.command("show")
@click.argument("ident", metavar="ID", type=click.IntRange(min=0))
@pass_state
def show_command(state: CliState, ident: int) -> None:
    """Print one failure whole, traceback included, as JSON; its key and input value are
    shown decoded beside their base64 (``value`` as JSON when it is JSON, else ``*_text``
    when UTF-8 text, else ``*_hex``; the key as text or hex), as the console shows them:
    past 64 KiB only the first 64 KiB, with ``*_size`` and ``*_shown`` in bytes.

    \b
    Example:
      millstream exceptions show 12
    """
    _ensure(state)
    with open_streams(state) as streams:
        found = list_exceptions(streams, ids=[ident])
    if not found:
        raise NotFoundError(f"no exception with id {ident}; `millstream exceptions list` "
                            "shows the ids")
    failure = found[0]
    doc = dict(failure.document)
    doc["id"] = ident
    doc.update(fields("key", failure.key(), as_json=False))
    if failure.document.get("value_b64") is not None:
        doc.update(fields("value", failure.value()))
    click.echo(json.dumps(doc, indent=2))


@exceptions_group.command("replay")
@click.argument("idents", metavar="[ID]...", nargs=-1, type=click.IntRange(min=0))
@click.option("--all", "everything", is_flag=True,
              help="Every failure matching --service/--group/--since not yet replayed.")
@click.option("--service", help="With --all: only this service's failures.")
@click.option("--group", help="With --all: only this group's failures.")
@click.option("--since", metavar="SPAN|TIME", help="With --all: only newer ones.")
@click.option("--include-reported", is_flag=True,
              help="With --all: also inputs handled by design and reported (ctx.report, "
                   "late records, unmatched join records); replaying processes them again.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; send nothing.")
@pass_state
def replay_command(state: CliState, idents: tuple[int, ...], everything: bool,
                   service: str | None, group: str | None, since: str | None,
                   include_reported: bool, dry_run: bool) -> None:
    """Re-submit failures to their service only (through its retry stream), after a fix.

    Other groups reading the same input never see the records again. A record that fails
    again comes back as a new exception that names the one it replays. Inputs a handler
    processed and only reported (stages ``reported``, ``late`` and ``join``: ctx.report, a
    window's or join's late record, an inner join's unmatched one) were not failures: --all
    leaves them out unless --include-reported, and naming one replays it with a warning.

    \b
    Example:
      millstream exceptions replay 12 13
      millstream exceptions replay --all --service billing --since 1h
    """
    if bool(idents) == everything:
        raise click.UsageError("give exception ids, or --all (with optional filters)")
    _ensure(state)
    with open_streams(state) as streams:
        if everything:
            found = list_exceptions(streams, group=group, service=service,
                                    since=_epoch_s(parse_since(since)))
            done: dict[str, set[int]] = {}
            for failure in found:
                if failure.group not in done:
                    done[failure.group] = replayed_ids(streams, failure.group)
            found = [f for f in found if f.id not in done[f.group]]
            skipped = [f for f in found if f.reported and not include_reported]
            if skipped:
                click.echo(f"left out {len(skipped)} reported input(s) (processed, not "
                           "failed; --include-reported replays them too)", err=True)
                found = [f for f in found if not (f.reported and not include_reported)]
        else:
            found = list_exceptions(streams, ids=idents)
            missing = sorted(set(idents) - {f.id for f in found})
            if missing:
                raise NotFoundError(
                    f"no exception with id {', '.join(map(str, missing))}; nothing was "
                    "replayed — `millstream exceptions list` shows the ids")
            for f in found:
                if f.reported:
                    click.echo(f"warning: {f.id} was reported by {f.service}, not a failure: "
                               "its input was processed and will be processed again", err=True)
        if not found:
            click.echo("nothing to replay", err=True)
            return
        if dry_run:
            for f in found:
                click.echo(f"would replay {f.id} ({f.service}, {f.error_type}) to group "
                           f"{f.group}")
            return
        results = replay(streams, found)
    t = table(">Id", "Group", "Retry stream", ">Offset")
    for r in results:
        t.add_row(str(r.id), r.group, r.stream, str(r.offset))
    console().print(t)
    click.echo(f"replayed {len(results)} record(s); each service picks them up from its retry "
               "stream while it runs", err=True)
