"""The fenced code blocks of README.md and docs/, and the ones marked to be run.

A block is runnable when the line before its opening fence is `<!-- runnable -->` (invisible
when the Markdown is rendered). Only `sh` and `python` blocks can be marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- runnable -->"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
RUNNABLE_LANGUAGES = ("sh", "python")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, and whether it is marked."""

    path: Path
    line: int
    language: str
    code: str
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def documents() -> list[Path]:
    """README.md first (its examples set up what the docs' examples use), then docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(path, line, match[1], match[2], before == MARK))
    return found


def runnable_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks(path) if block.runnable]
