"""A run's outcome in words (the summary ``millstream verify`` prints) and as JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from millstream._verify.analysis import Verdict
from millstream._verify.runner import Outcome

__all__ = ["ANOMALY_LINES", "as_json", "summary"]

#: The label of each anomaly line, in the order printed.
ANOMALY_LINES = {
    "lost": "lost (acknowledged or polled, then absent)",
    "duplicated": "stored twice (one value at two positions)",
    "conflicting": "one offset, two values",
    "read_twice": "returned twice by the final read",
    "unexpected": "stored but never sent",
    "backwards": "offsets going backwards in a consumer",
    "rewound": "the group re-read below a commit confirmed before the assignment",
    "skipped": "skipped by the group (below a commit, never polled)",
    "undelivered": "never delivered to the group (after it drained every partition)",
    "incomplete": "incomplete (a role never ran to its end, or the group polled nothing)",
}


def _accounting(v: Verdict) -> list[str]:
    return [
        f"sends: {v.attempted} attempted, {v.acknowledged} acknowledged, {v.failed} reported "
        f"failed, {v.indeterminate} indeterminate (killed or stopped before an answer)",
        f"stored: {v.stored} records holding {v.stored_values} distinct values: "
        f"{v.stored_acknowledged} of the {v.acknowledged} acknowledged, "
        f"{v.stored_indeterminate} of the {v.indeterminate} indeterminate, "
        f"{v.stored_failed} of the {v.failed} reported failed",
        f"group: {v.delivered} of the {v.stored} stored records polled by the group in "
        f"{v.polls} polls; {v.commits} commits",
    ]


def summary(outcome: Outcome) -> list[str]:
    """The lines to print: the run, the accounting, each anomaly with up to a few examples,
    and the verdict (PASS or FAIL)."""
    v = outcome.verdict
    kills = ", ".join(f"{n} {role}s" for role, n in sorted(outcome.process_kills.items()))
    lines = [
        f"stream {outcome.stream}: ran {outcome.seconds:.0f} s; "
        f"{sum(outcome.process_kills.values())} processes SIGKILLed and restarted"
        + (f" ({kills})" if kills else "")
        + (f", {outcome.broker_kills} brokers SIGKILLed and restarted"
           if outcome.broker_kills else ""),
        *_accounting(v),
    ]
    for name, label in ANOMALY_LINES.items():
        finding = v.anomalies[name]
        lines.append(f"{label}: {finding.count}")
        lines.extend(f"  e.g. {example}" for example in finding.examples)
    for exit_ in outcome.exits:
        lines.append(f"note: worker {exit_.name} ended by itself with code {exit_.returncode}: "
                     f"{exit_.last_line or '(no output)'}")
    if not outcome.deleted:
        lines.append(f"note: the scratch stream {outcome.stream} could not be deleted; delete "
                     f"it with: millstream streams delete {outcome.stream}")
    if v.passed:
        lines.append("PASS: nothing acknowledged was lost, nothing was stored twice, "
                     "nothing was inconsistent, every stored record reached the group")
    else:
        lines.append(f"FAIL: histories kept in {outcome.history}")
    return lines


def as_json(outcome: Outcome) -> dict[str, Any]:
    """The outcome as plain JSON values (``--json FILE``)."""
    verdict = dataclasses.asdict(outcome.verdict)
    for finding in verdict.values():
        if isinstance(finding, dict):
            finding["examples"] = list(finding["examples"])
    return {
        "stream": outcome.stream, "seconds": round(outcome.seconds, 3),
        "passed": outcome.verdict.passed, "process_kills": outcome.process_kills,
        "broker_kills": outcome.broker_kills,
        "worker_exits": [dataclasses.asdict(e) for e in outcome.exits],
        "history": str(outcome.history), "verdict": verdict,
    }
