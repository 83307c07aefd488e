"""``millstream diff`` and ``millstream promote``: side-by-side versions of a service."""

from __future__ import annotations

import json

import click

from millstream.cli.shared import CliState, console, open_streams, pass_state, table
from millstream.operations._loader import load_app
from millstream.operations._shadow import diff_outputs, promote

__all__ = ["diff_command", "promote_command"]


def _short(value: object, width: int = 70) -> str:
    text = json.dumps(value, sort_keys=True, default=repr) if not isinstance(value, bytes) \
        else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


@click.command("diff")
@click.argument("target", metavar="MODULE:APP")
@click.argument("service")
@click.option("--shadow", "version", required=True, metavar="VERSION",
              help="The shadow version to compare with production.")
@click.option("--examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="Differing pairs to show per stream.")
@pass_state
@click.pass_context
def diff_command(ctx: click.Context, state: CliState, target: str, service: str, version: str,
                 examples: int) -> None:
    """Compare SERVICE's outputs with those of its shadow VERSION, record by record.

    Records are paired by key and order (the n-th record of a key in each). Exits 1 when the
    outputs differ, like diff(1).

    \b
    Example:
      millstream diff shop_v2:app billing --shadow v2
    """
    app = load_app(target)
    with open_streams(state) as streams:
        results = diff_outputs(streams, app, service, version, examples=examples)
    out = console()
    t = table("Stream", ">Production", ">Shadow", ">Equal", ">Differ", ">Only prod",
              ">Only shadow", "Fields that differ")
    for r in results:
        fields = ", ".join(f"{name} ({n})" for name, n in r.fields.most_common()) or "-"
        t.add_row(r.stream, str(r.production_records), str(r.shadow_records), str(r.equal),
                  str(r.differing), str(r.only_production), str(r.only_shadow), fields)
    out.print(t)
    for r in results:
        if r.other_writers:
            out.print(f"{r.stream}: {r.other_writers} production record(s) written by other "
                      f"services were left out (millstream-writer header)")
    for r in results:
        for d in r.examples:
            key = d.key.decode(errors="replace") if d.key is not None else "(no key)"
            out.print(f"{r.stream} key {key} #{d.occurrence + 1}:")
            out.print(f"  production {_short(d.production)}")
            out.print(f"  shadow     {_short(d.shadow)}")
    same = all(r.identical for r in results)
    click.echo("outputs are identical" if same else "outputs differ", err=True)
    ctx.exit(0 if same else 1)


@click.command("promote")
@click.argument("target", metavar="MODULE:APP")
@click.argument("service")
@click.option("--shadow", "version", required=True, metavar="VERSION",
              help="The shadow version to make production.")
@pass_state
def promote_command(state: CliState, target: str, service: str, version: str) -> None:
    """Make SERVICE's shadow VERSION production.

    Stop both first. Production's group takes over the shadow's input offsets (nothing is
    processed twice) and, for a stateful service, its state; then run the new code as
    production.

    \b
    Example:
      millstream promote shop_v2:app billing --shadow v2
      millstream run shop_v2:app billing
    """
    app = load_app(target)
    with open_streams(state) as streams:
        record = promote(streams, app, service, version)
    out = console()
    out.print(f"promoted {service} {version}: group {record['to_group']} now continues from "
              f"{record['from_group']}'s offsets")
    t = table("Stream", ">Partition", ">Offset")
    for stream, offsets in record["offsets"].items():
        for partition, offset in sorted(offsets.items()):
            t.add_row(stream, str(partition), str(offset))
    out.print(t)
    if record["checkpoints"]:
        out.print(f"copied {record['checkpoints']} state checkpoint(s)")
    click.echo(f"now run the new code as production: millstream run {target} {service}",
               err=True)
