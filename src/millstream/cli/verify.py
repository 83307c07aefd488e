"""``millstream verify``: check a streams deployment the way Jepsen checks Kafka.

The engine is ``millstream._verify``; this module reads the options, refuses unsafe
combinations (``--kill-brokers`` only for a test cluster named by ``--cluster-dir``), shows a
progress bar, prints the summary and turns the verdict into the exit code: 0 passed, 3 the
check found anomalies, 1 the run could not be carried out, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from millstream._verify.brokers import TestCluster
from millstream._verify.report import as_json, summary
from millstream._verify.runner import Interrupted, Outcome, Plan, Tick, reanalyse, run
from millstream.cli.shared import CliState, console, pass_state
from millstream.config import load_config
from millstream.errors import MillstreamError

__all__ = ["FAILED_EXIT", "verify_command"]

#: The exit code when the check found anomalies (the run itself went through).
FAILED_EXIT = 3


def _cluster(cluster_dir: Path | None, kill_brokers: bool, url: str | None) -> TestCluster | None:
    if cluster_dir is None:
        if kill_brokers:
            raise click.UsageError(
                "--kill-brokers needs --cluster-dir DIR: the directory of a test cluster "
                "started with 'python -m tests.support.kafka_cluster start --dir DIR', whose "
                "state.json names the broker processes verify may kill. verify never kills a "
                "broker it was not pointed at.")
        return None
    if not kill_brokers:
        raise click.UsageError("--cluster-dir only serves --kill-brokers; give both, or neither")
    cluster = TestCluster(cluster_dir)
    if url is not None:
        parts = urlsplit(url)
        named = set(parts.netloc.split(",")) if parts.scheme == "kafka" else set()
        if not named & set(cluster.bootstrap.split(",")):
            raise click.UsageError(
                f"--kill-brokers: the streams URL {url!r} does not name the brokers of the test "
                f"cluster in {cluster_dir} ({cluster.bootstrap}); leave out --streams to use "
                f"kafka://{cluster.bootstrap}")
    return cluster


@click.command("verify")
@click.option("--streams", "streams_url", metavar="URL",
              help="The deployment to check (default: the global --streams, else the "
                   "configured one).")
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="How long producers and consumers run.")
@click.option("--producers", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--consumers", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--partitions", default=6, show_default=True, type=click.IntRange(min=1),
              help="Partitions of the scratch stream.")
@click.option("--kill-every", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Mean seconds between SIGKILLs of a random worker (0: none).")
@click.option("--kill-brokers", is_flag=True,
              help="Also SIGKILL and restart a random broker of the test cluster named by "
                   "--cluster-dir.")
@click.option("--cluster-dir", type=click.Path(path_type=Path, file_okay=False),
              help="The directory (with state.json) of the test Kafka cluster --kill-brokers "
                   "may kill.")
@click.option("--broker-every", default=15.0, show_default=True,
              type=click.FloatRange(min=0.5), help="Mean seconds between broker kills.")
@click.option("--seed", type=int, help="Seed of the fault schedule (default: a random one, "
                                       "printed).")
@click.option("--history", type=click.Path(path_type=Path, file_okay=False),
              help="Keep every process's history in this directory (default: a temporary one, "
                   "deleted when the run passes).")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the outcome as JSON to this file.")
@click.option("--analyse", "analyse_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Run nothing: analyse again the histories a run kept with --history DIR.")
@pass_state
@click.pass_context
def verify_command(ctx: click.Context, state: CliState, streams_url: str | None, seconds: float,
                   producers: int, consumers: int, partitions: int, kill_every: float,
                   kill_brokers: bool, cluster_dir: Path | None, broker_every: float,
                   seed: int | None, history: Path | None, json_path: Path | None,
                   analyse_dir: Path | None) -> None:
    """Check that a streams deployment keeps what it acknowledges, under SIGKILLs.

    Creates a scratch stream, runs producers (unique values) and a consumer group in
    separate processes, SIGKILLs and restarts them at random, then reads everything back
    from the start and checks the histories. Deletes the scratch stream at the end. Exit 0
    only when nothing acknowledged is lost, nothing is stored twice and nothing is
    inconsistent; 3 when something is.

    \b
    Example:
      millstream verify --seconds 60 --producers 3 --consumers 3
      millstream verify --streams kafka://broker:9092 --seconds 120
    """
    if analyse_dir is not None:
        _finish(ctx, reanalyse(analyse_dir), json_path)
        return
    if history is not None and history.exists() and any(history.iterdir()):
        raise click.BadParameter(
            f"{history} is not empty; give a new or empty directory (histories of two runs "
            "in one directory would be analysed as one)", param_hint="'--history'")
    url = streams_url or state.streams_url
    cluster = _cluster(cluster_dir, kill_brokers, url)
    if cluster is not None and url is None:
        url = f"kafka://{cluster.bootstrap}"
    config = load_config(streams=url)
    seed = seed if seed is not None else secrets.randbelow(2**31)
    folder = history or Path(tempfile.mkdtemp(prefix="millstream-verify-"))
    plan = Plan(url=config.streams, home=config.home, history=folder, seconds=seconds,
                producers=producers, consumers=consumers, partitions=partitions,
                kill_every=kill_every, broker_every=broker_every, cluster=cluster, seed=seed)
    err = console(stderr=True)
    err.print(f"verify on {config.streams} — {producers} producers, {consumers} consumers, "
              f"{seconds:g} s, seed {seed}" + (", killing brokers" if cluster else ""))
    progress = Progress(TextColumn("{task.fields[phase]}"), BarColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[acked]} sends acked"),
                        TextColumn("{task.fields[kills]} kills"), console=err, transient=True)
    task = progress.add_task("verify", total=seconds, acked=0, kills=0, phase="verify")

    def tick(t: Tick) -> None:
        progress.update(task, completed=t.elapsed, acked=t.acked,
                        kills=t.kills + t.broker_kills,
                        phase="verify" if t.phase == "faults" else "group reading to the end")

    keep = history is not None
    try:
        try:
            with progress:
                outcome = run(plan, tick)
        except Interrupted as exc:
            err.print(f"interrupted; {_stream_fate(exc)}"
                      + (f"; histories in {folder}" if keep else ""))
            ctx.exit(130)
        except MillstreamError:
            if keep:
                err.print(f"the run could not be completed; histories so far in {folder}")
            raise
        keep = keep or not outcome.verdict.passed  # the summary's FAIL line says where
        _finish(ctx, outcome, json_path)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _stream_fate(exc: Interrupted) -> str:
    if exc.deleted is None:
        return "no scratch stream was created"
    if exc.deleted:
        return f"the scratch stream {exc.stream} was deleted"
    return (f"the scratch stream {exc.stream} could NOT be deleted; delete it with: "
            f"millstream streams delete {exc.stream}")


def _finish(ctx: click.Context, outcome: Outcome, json_path: Path | None) -> None:
    """Print the summary, write the JSON, and exit 3 (anomalies) or 1 (nothing acknowledged)
    unless the run passed."""
    for line in summary(outcome):
        click.echo(line)
    if json_path is not None:
        json_path.write_text(json.dumps(as_json(outcome), indent=2) + "\n")
    if not outcome.verdict.passed:
        ctx.exit(FAILED_EXIT)
    if outcome.verdict.acknowledged == 0:
        click.secho(f"error: no send was acknowledged in {outcome.seconds:.0f} s: the run "
                    "proves nothing; is the deployment reachable?", fg="red", err=True)
        ctx.exit(1)
