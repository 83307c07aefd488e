"""Run the test suite as parts, each a pytest session of its own, at the same time (`make test`).

    python -m tests.support.parts [--log-dir DIR] [PART ...] -- [pytest arguments]

The parts are those of ``--part`` (tests/support/platform_fixtures.py): ``kafka`` (every test
marked kafka: the Kafka brokers start in that session only, three nodes last) and ``other``
(everything else: the embedded backends, S3, PostgreSQL, the browser). Most of a Kafka test's
time is spent waiting on the broker, a kill or a timeout, so the other part runs meanwhile on
the second core instead of after it.

Each session writes to ``DIR/<part>.log``; a progress line comes every ``--every`` seconds,
and a part's whole output is printed when it ends, then one line per part with pytest's
summary. The exit status is the first failing part's (pytest's 5, "no tests", counts as a
failure only when every part selected nothing). Ctrl-C or SIGTERM interrupts every session
(each stops the servers it started) before this returns.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

PARTS = ("kafka", "other")
NO_TESTS = 5
#: a line of pytest -q's progress: result characters, then the percentage once the line is full
#: pytest's last line: counts, then the time (``3 failed, 1392 passed, 82 deselected in 2110.72s``)
FINAL = re.compile(r"^=*\s*(?:\d+ [a-z]+(?:, )?)+ in [\d.]+s\b")
RESULTS = re.compile(r"^([.sxXFE]+)(?:\s+\[\s*\d+%\])?$")


@dataclass
class Part:
    name: str
    log: Path
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    cpu: float = 0.0  # user + system seconds of the session and the children it waited for

    def reap(self) -> int | None:
        """The session's exit status once it ended (and its CPU time in ``cpu``), else None."""
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.cpu = usage.ru_utime + usage.ru_stime
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def progress(self) -> str:
        """How many tests have ended so far and how many of them failed, from pytest's
        ``-q`` progress characters (lines of ``.sFExX``, each ending in ``[ NN%]`` once full)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "starting"
        ended = failed = 0
        for line in text.splitlines():
            chars = RESULTS.match(line)
            if chars:
                ended += len(chars[1])
                failed += sum(chars[1].count(c) for c in "FE")
        return f"{ended} ended, {failed} failed" if ended else "collecting"

    def summary(self) -> str:
        """pytest's final line (``N passed, M skipped in S s``), else the last line."""
        lines = self.log.read_text(errors="replace").splitlines()
        for line in reversed(lines):
            if FINAL.match(line):
                return line.strip("= ").strip()
        return lines[-1].strip() if lines else "(no output)"


def _start(name: str, pytest_args: list[str], log_dir: Path) -> Part:
    log = log_dir / f"{name}.log"
    out = open(log, "wb")  # noqa: SIM115 - closed when the part ends
    proc = subprocess.Popen([sys.executable, "-m", "pytest", f"--part={name}", *pytest_args],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Part(name, log, proc, out)


def _finish(part: Part, returncode: int) -> None:
    part.ended = time.monotonic()
    part.out.close()
    print(f"\n===== part {part.name}: exit {returncode} after {part.seconds:.0f} s, "
          f"CPU {part.cpu:.0f} s "
          f"(log: {part.log}) =====", flush=True)
    sys.stdout.write(part.log.read_text(errors="replace"))
    sys.stdout.flush()


def exit_status(codes: list[int]) -> int:
    """The exit status of a run whose parts exited with ``codes`` (see the module doc)."""
    failed = [code for code in codes if code not in (0, NO_TESTS)]
    if failed:
        return failed[0]
    if all(code == NO_TESTS for code in codes):
        return NO_TESTS
    return 0


def run(names: list[str], pytest_args: list[str], log_dir: Path, every: float) -> int:
    log_dir.mkdir(parents=True, exist_ok=True)
    stop: list[int] = []

    def interrupted(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    old = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    parts = [_start(name, pytest_args, log_dir) for name in names]
    print(f"pytest sessions at once: {', '.join(names)} (logs in {log_dir})", flush=True)
    codes: dict[str, int] = {}
    next_report = time.monotonic() + every
    try:
        while len(codes) < len(parts):
            if stop:
                for p in parts:
                    if p.name not in codes:
                        p.proc.send_signal(signal.SIGINT)  # pytest stops its servers on it
                stop.clear()
            for p in parts:
                if p.name not in codes and (rc := p.reap()) is not None:
                    codes[p.name] = rc
                    _finish(p, rc)
            if time.monotonic() >= next_report and len(codes) < len(parts):
                running = "; ".join(f"{p.name} {p.seconds:.0f} s: {p.progress()}"
                                    for p in parts if p.name not in codes)
                print(f"[{time.monotonic() - t0:.0f} s] running: {running}", flush=True)
                next_report += every
            time.sleep(0.2)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for p in parts:
            if p.proc.poll() is None:  # only on an error here: do not leave a session behind
                p.proc.terminate()
                p.proc.wait(60)
    print(f"\n===== {len(parts)} parts in {time.monotonic() - t0:.0f} s =====")
    for p in parts:
        print(f"{p.name}: exit {codes[p.name]}, {p.summary()} (wall {p.seconds:.0f} s, "
              f"CPU {p.cpu:.0f} s)")
    return exit_status([codes[p.name] for p in parts])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, pytest_args = args[:at], args[at + 1:]
    parser = argparse.ArgumentParser(prog="python -m tests.support.parts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"the parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="where each part's log goes (default: a new temporary directory)")
    parser.add_argument("--every", type=float, default=60.0,
                        help="seconds between progress lines (default 60)")
    opts = parser.parse_args(args)
    names = list(dict.fromkeys(opts.parts or PARTS))
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}: the parts are {', '.join(PARTS)}")
    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="millstream-test-parts-"))
    return run(names, pytest_args, log_dir, opts.every)


if __name__ == "__main__":
    sys.exit(main())
