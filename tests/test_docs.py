"""The README and docs/ hold no dead link: every relative link names a file of the repository and, with `#anchor`, one
of its headings (as GitHub makes anchors); every repository path they quote in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
QUOTED_PATH = re.compile(r"`((?:api|bench|cli|core|deploy|docs|tasks|tests|worker)/[\w./-]*\.\w+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def prose(path: Path) -> str:
    """The document without its fenced code blocks (a link in an example is not the document's)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(path), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()).replace(" ", "-")
        numbered, n = slug, 1
        while numbered in found:
            numbered, n = f"{slug}-{n}", n + 1
        found.add(numbered)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(document: Path) -> None:
    dead = []
    for target in LINK.findall(prose(document)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not the repository's
            continue
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists() or not linked.is_relative_to(ROOT):
            dead.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            dead.append(f"{target}: no heading with that anchor in {linked.relative_to(ROOT)}")
    assert dead == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_repository_paths_exist(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    assert [p for p in QUOTED_PATH.findall(text) if not (ROOT / p).exists()] == []


def test_the_anchor_rules() -> None:
    assert {"job-lifecycle", "flower", "security"} <= anchors(ROOT / "README.md") | anchors(ROOT / "docs/operations.md")
