"""The README starts by saying what millstream is, then gives the two commands that run the
demo and the tests, exactly; its install line names only extras pyproject.toml defines, and
its extras table covers them all."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
COMMANDS = """\
make demo     # create .venv, install, run the video site on sample clips it makes; prints the URLs
make test     # create .venv, install, start the services the tests need, run the whole suite
"""


def extras() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def test_the_readme_says_what_millstream_is_then_gives_the_two_commands() -> None:
    title, first_paragraph, first_block = README.split("\n\n")[:3]
    assert title == "# millstream"
    assert first_paragraph.startswith("millstream is a Python platform")
    assert first_block == "```\n" + COMMANDS + "```"


def test_the_readme_installs_from_a_clone_with_extras_pyproject_defines() -> None:
    named = re.search(r"pip install -e '\.\[([\w,]+)\]'", README)
    assert named is not None
    assert set(named.group(1).split(",")) <= extras()
    table = README.split("| extra | for |", 1)[1].split("\n\n", 1)[0]
    listed = {name for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
              for name in re.findall(r"`(\w+)`", cell)}
    assert listed == extras()
