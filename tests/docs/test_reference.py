"""The generated reference pages (docs/reference/cli.md, errors.md) are what their scripts
write from the code as it is now: a command's help or an error class changed without running
the script fails here, with the command that brings the page up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {"docs/reference/cli.md": "scripts/cli_reference.py",
           "docs/reference/errors.md": "scripts/errors_reference.py"}


@pytest.mark.parametrize(("page", "script"), SCRIPTS.items())
def test_the_committed_reference_page_is_what_its_script_writes_from_the_code(
        page: str, script: str) -> None:
    # in a fresh interpreter: click keeps the help option a command first built, so a test
    # that invoked a sub-command alone (without the root's -h) would change the rendering here
    proc = subprocess.run([sys.executable, "-c",
                           f"import runpy; m = runpy.run_path({str(REPO / script)!r}); "
                           "import sys; sys.stdout.write(m['render']())"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    committed = (REPO / page).read_text()
    assert committed == proc.stdout, (
        f"{page} is out of date with the code: run make docs (python {script}) and commit it")


def test_the_cli_reference_lists_every_visible_command_with_its_help() -> None:
    import click

    from millstream.cli.main import cli

    text = (REPO / "docs/reference/cli.md").read_text()
    stack: list[tuple[str, click.Command]] = [("millstream", cli)]
    while stack:
        path, command = stack.pop()
        assert f"\n## {path}\n" in text, f"{path} has no section"
        assert (command.help or "").strip().splitlines()[0] in text
        if isinstance(command, click.Group):
            stack += [(f"{path} {name}", sub) for name, sub in command.commands.items()
                      if not sub.hidden]


def test_the_configuration_page_lists_every_local_option_with_its_default() -> None:
    import dataclasses

    from millstream.streams._local import LocalOptions

    text = (REPO / "docs/reference/configuration.md").read_text()
    section = text.split("### `local:` options", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1].strip("`")
    assert rows == {f.name: str(f.default) for f in dataclasses.fields(LocalOptions)}
