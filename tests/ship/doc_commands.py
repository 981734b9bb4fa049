"""The shell command lines that README.md, docs/ and the man pages show, as written.

Markdown: every line of a fenced block tagged ``sh``, ``bash``, ``shell`` or ``console``
(``$ `` prompts removed); a block without a tag is reported, so that each new block says
whether it holds commands (``sh``) or not (``text``, ``toml`` ...). Man pages: the ``.nf``/
``.fi`` blocks of the EXAMPLES section of section-1 pages. Continuation lines are joined and
comments dropped (a ``#`` outside quotes, after a blank).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TAGS = frozenset({"sh", "bash", "shell", "console"})


@dataclass(frozen=True)
class DocCommand:
    """One command line and where it is shown."""

    source: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


def strip_comment(line: str) -> str:
    """Drop a trailing ``# comment`` that is outside quotes and after a blank."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _commands(source: str, numbered: list[tuple[int, str]]) -> list[DocCommand]:
    out: list[DocCommand] = []
    pending, start = "", 0
    for number, raw in numbered:
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = strip_comment(pending + line).strip()
        pending = ""
        if text:
            out.append(DocCommand(source, start, text))
    return out


def markdown_commands(path: Path) -> tuple[list[DocCommand], list[str]]:
    """Commands in ``path``, and the untagged fenced blocks (``file:line``)."""
    commands: list[DocCommand] = []
    untagged: list[str] = []
    block: list[tuple[int, str]] | None = None
    tag = ""
    rel = str(path.relative_to(ROOT))
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            if block is None:
                tag = line.strip()[3:].strip().split()[0] if line.strip()[3:].strip() else ""
                if not tag:
                    untagged.append(f"{rel}:{number}")
                block = []
            else:
                if tag in COMMAND_TAGS:
                    commands += _commands(rel, block)
                block = None
            continue
        if block is not None:
            block.append((number, line))
    return commands, untagged


def _unescape_roff(line: str) -> str:
    line = line.replace("\\-", "-").replace("\\(aq", "'").replace("\\e", "\\").replace("\\&", "")
    return re.sub(r"\\f[BIRP]", "", line)


def man_commands(path: Path) -> list[DocCommand]:
    """Commands in the EXAMPLES section of a section-1 man page."""
    text = path.read_text().splitlines()
    if not any(line.startswith(".TH ") and line.split()[2:3] == ["1"] for line in text):
        return []
    rel = str(path.relative_to(ROOT))
    section, block, numbered = "", False, []
    for number, line in enumerate(text, start=1):
        if line.startswith(".SH "):
            section = line[4:].strip().strip('"')
        elif line.startswith(".nf"):
            block = True
        elif line.startswith(".fi"):
            block = False
        elif block and section == "EXAMPLES" and not line.startswith("."):
            numbered.append((number, _unescape_roff(line)))
    return _commands(rel, numbered)


def documented_commands() -> tuple[list[DocCommand], list[str]]:
    """Every command of README.md, docs/**/*.md and packaging/man/*; untagged blocks."""
    commands: list[DocCommand] = []
    untagged: list[str] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        found, bare = markdown_commands(path)
        commands += found
        untagged += bare
    for path in sorted((ROOT / "packaging" / "man").glob("*.[1-8]")):
        commands += man_commands(path)
    return commands, untagged
