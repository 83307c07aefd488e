"""``millstream run`` and ``millstream up``: run one service, or every service of an app."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import click

from millstream.cli.shared import CliState, console, open_streams, pass_state
from millstream.files import open_files
from millstream.operations._loader import load_app
from millstream.operations._supervisor import Supervisor, run_command
from millstream.runtime._runner import ServiceRunner
from millstream.tables import open_tables

__all__ = ["run_command_cli", "up_command"]


def _child_env(state: CliState) -> dict[str, str]:
    env = dict(os.environ)
    if state.streams_url:
        env["MILLSTREAM_STREAMS"] = state.streams_url
    return env


def _supervise(children: list[tuple[str, list[str]]], state: CliState) -> int:
    out = console(stderr=True)
    supervisor = Supervisor(children, env=_child_env(state),
                            on_event=lambda message: out.print(f"millstream: {message}"))

    def stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = supervisor.run()
    restarts = sum(c.restarts for c in supervisor.children)
    out.print(f"millstream: stopped {len(children)} process(es); {restarts} restart(s)")
    return code


@click.command("run")
@click.argument("target", metavar="MODULE:APP")
@click.argument("service")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes sharing the service's consumer group (supervised).")
@click.option("--shadow", metavar="VERSION",
              help="Run as a shadow version: its own group, outputs to <stream>.shadow.VERSION.")
@click.option("--metrics-interval", default=5.0, show_default=True,
              type=click.FloatRange(min=0.1), help="Seconds between metrics records.")
@click.option("--instance-index", default=0, type=click.IntRange(min=0), hidden=True,
              help="Which of N parallel instances this process is (set by the supervisor).")
@pass_state
@click.pass_context
def run_command_cli(ctx: click.Context, state: CliState, target: str, service: str,
                    instances: int, shadow: str | None, metrics_interval: float,
                    instance_index: int) -> None:
    """Run SERVICE of the app MODULE:APP until Ctrl-C or SIGTERM.

    On a stop signal the service finishes the record in hand, commits and exits. With
    --instances N, N processes share the service's group and a dead one is restarted.

    \b
    Example:
      millstream run shop:app billing
      millstream run shop:app billing --instances 3
    """
    app = load_app(target)
    app.get(service)
    if instances > 1:
        extra = ["--metrics-interval", str(metrics_interval)]
        if shadow:
            extra += ["--shadow", shadow]
        children = [(f"{service}#{i + 1}",
                     run_command(target, service, [*extra, "--instance-index", str(i)]))
                    for i in range(instances)]
        ctx.exit(_supervise(children, state))
    files = open_files()
    tables = open_tables()
    with open_streams(state) as streams:
        runner = ServiceRunner(app, service, streams, shadow=shadow,
                               metrics_interval_s=metrics_interval, instance=instance_index,
                               files=files, tables=tables)

        def stop(signum: int, frame: FrameType | None) -> None:
            runner.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        console(stderr=True).print(
            f"millstream: {app.name}.{service} running as group {runner.group} on "
            f"{streams.url} (pid {os.getpid()}); Ctrl-C to stop")
        runner.run()
        stats = runner.statistics()
        console(stderr=True).print(
            f"millstream: {service} stopped: {stats.records_in} in, {stats.records_out} out, "
            f"{stats.exceptions} to exceptions")
    files.close()
    tables.close()
    sys.stdout.flush()


@click.command("up")
@click.argument("target", metavar="MODULE:APP")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes per service.")
@pass_state
@click.pass_context
def up_command(ctx: click.Context, state: CliState, target: str, instances: int) -> None:
    """Run every service of MODULE:APP as supervised processes until Ctrl-C or SIGTERM.

    A service process that dies is restarted with back-off; on a stop signal every service
    finishes its record in hand, commits and exits.

    \b
    Example:
      millstream up shop:app
    """
    app = load_app(target)
    if not app.services:
        raise click.ClickException(f"app {app.name!r} declares no services")
    children = [
        (name if instances == 1 else f"{name}#{i + 1}",
         run_command(target, name, ["--instance-index", str(i)]))
        for name in app.services for i in range(instances)
    ]
    ctx.exit(_supervise(children, state))
