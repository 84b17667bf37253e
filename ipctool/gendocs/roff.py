"""Text to roff (man(7) markup), and click help text to paragraphs."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass


def escape(text: str) -> str:
    """Text for roff: a backslash prints as \\e; every hyphen is \\- so options copy and
    paste as ASCII; anything outside ASCII is named by code point."""
    text = text.replace("\\", r"\e").replace("-", r"\-")
    return "".join(c if c.isascii() else f"\\[u{ord(c):04X}]" for c in text)


def text_line(text: str) -> str:
    """One roff input line of text: a leading . or ' would be read as a request."""
    line = escape(text)
    return "\\&" + line if line.startswith((".", "'")) else line


def bold(text: str) -> str:
    return rf"\fB{escape(text)}\fR"


def italic(text: str) -> str:
    return rf"\fI{escape(text)}\fR"


def page_ref(page: str) -> str:
    return rf"{bold(page)}(1)"


@dataclass(frozen=True)
class Block:
    """A help paragraph: filled by roff, or (after click's \\b marker) kept as written."""

    lines: list[str]
    verbatim: bool = False

    @property
    def heading(self) -> str | None:
        """'Examples:' for a verbatim block of indented lines under such a heading."""
        first, rest = self.lines[0], self.lines[1:]
        if not (self.verbatim and rest and first.endswith(":") and not first[0].isspace()):
            return None
        return first if all(line[:1].isspace() for line in rest) else None


def help_blocks(text: str | None) -> list[Block]:
    """Split click help text into paragraphs the way click's wrap_text does."""
    if not text:
        return []
    text = inspect.cleandoc(text.split("\f", 1)[0])
    blocks: list[Block] = []
    current: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            current.append(line.rstrip())
            continue
        if current:
            verbatim = current[0].strip() in ("\b", "\\b")
            body = current[1:] if verbatim else current
            if body:
                blocks.append(Block(body, verbatim))
            current = []
    return blocks


def render_blocks(blocks: Iterable[Block]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        out.append(".PP")
        if not block.verbatim:
            out.extend(text_line(line.strip()) for line in block.lines)
            continue
        lines = block.lines
        heading = block.heading
        if heading is not None:
            out.append(text_line(heading))
            lines = textwrap.dedent("\n".join(lines[1:])).splitlines()
            out.append(".RS 4")
        out.append(".nf")
        out.extend(text_line(line) for line in lines)
        out.append(".fi")
        if heading is not None:
            out.append(".RE")
    return out


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def first_paragraph(text: str | None) -> str:
    blocks = help_blocks(text)
    return one_line(" ".join(blocks[0].lines)) if blocks else ""


def summary(text: str | None) -> str:
    """The first paragraph as a NAME line: 'Send ... shell.' -> 'send ... shell'."""
    first = first_paragraph(text).removesuffix(".")
    if first[:2].istitle():  # "Send" but not "POSIX"
        first = first[0].lower() + first[1:]
    return first
