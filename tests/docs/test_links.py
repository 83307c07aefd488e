"""Every relative link in the README and docs/ reaches a file that exists, and every
``#anchor`` a heading of that file (as GitHub names headings), so moving a page cannot leave a
dead link behind."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces
    turned into hyphens, repeats numbered -1, -2 …"""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose(page.read_text()):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def links(page: Path) -> list[str]:
    text = "\n".join(line for line in prose(page.read_text()))
    text = re.sub(r"`[^`]*`", "", text)  # links are not written inside inline code
    return [m for m in LINK.findall(text) if not re.match(r"[a-z]+:", m)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_reaches_an_existing_file_and_heading(page: Path) -> None:
    dead = []
    for link in links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            dead.append(f"{link}: no file {target.relative_to(REPO)}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            dead.append(f"{link}: no heading #{anchor} in {target.relative_to(REPO)}")
    assert dead == [], f"{page.relative_to(REPO)} has dead links:\n" + "\n".join(dead)


def test_the_link_checker_finds_headings_as_github_names_them(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Files (`millstream.files`: `file://`, `s3://`)\n## A b\n## A b\n"
                    "```\n# not a heading\n```\n")
    assert anchors(page) == {"files-millstreamfiles-file-s3", "a-b", "a-b-1"}
