"""``millstream graph``: draw an app's services, streams and stores, as text or SVG."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from millstream.cli.shared import console
from millstream.observe import to_svg, to_text, topology
from millstream.operations._loader import load_app

__all__ = ["graph_command"]


@click.command("graph")
@click.argument("reference", metavar="MODULE:APP")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "svg"]), default=None,
    help="What to print: text for the terminal (default) or an SVG document.",
)
@click.option(
    "--svg", "svg_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE", help="Write the drawing as SVG to FILE ('-' for stdout).",
)
@click.option(
    "--platform", is_flag=True,
    help="Also draw the platform streams every service writes (metrics, exceptions, "
         "checkpoints).",
)
def graph_command(reference: str, fmt: str | None, svg_path: Path | None,
                  platform: bool) -> None:
    """Draw the app MODULE:APP: its services, the streams between them and the stores they use.

    Derived from the app's declarations alone; nothing is connected to or started. Services
    are listed by layer (how far downstream of the app's source streams they run).

    \b
    Example:
      millstream graph shop:app
      millstream graph shop:app --svg shop.svg --platform
    """
    if svg_path is not None and fmt == "text":
        raise click.UsageError("--svg writes SVG; leave out --format text or --svg")
    app = load_app(reference)
    if svg_path is None and fmt != "svg":
        text = Text(to_text(app, include_platform=platform).rstrip("\n"))
        text.highlight_regex(r"\[[^\]\n]+\]", "bold cyan")
        text.highlight_regex(r"(?m)^layer \d+$", "bold")
        console().print(text, soft_wrap=True)
        return
    svg = to_svg(app, include_platform=platform)
    if svg_path is None or str(svg_path) == "-":
        click.echo(svg, nl=False)
        return
    try:
        svg_path.write_text(svg, encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(svg_path), hint=exc.strerror or str(exc)) from exc
    topo = topology(app, include_platform=platform)
    counts = ", ".join(f"{len(topo.of_kind(k))} {k}{'s' * (len(topo.of_kind(k)) != 1)}"
                       for k in ("service", "stream", "store"))
    click.echo(f"wrote the graph of app {app.name!r} to {svg_path} ({counts})")
