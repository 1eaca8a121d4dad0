"""Card markdown as an EHR shows it: how many lines it takes, and which line says what."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

# CommonMark, as the public CDS Hooks sandbox renders card detail; the try-it page uses markdown-it too.
_MD = MarkdownIt("commonmark")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def rendered_lines(markdown: str) -> list[str]:
    """One entry per rendered block a reader sees as a line: each paragraph, heading and list item."""
    # Each paragraph and heading holds one inline run, and so does each list item (its paragraph).
    return [t.content for t in _MD.parse(markdown) if t.type == "inline"]


def line_of(markdown: str, lead: str) -> str:
    """The one rendered line that starts with `lead` (its bold group label, for instance)."""
    (line,) = [line for line in rendered_lines(markdown) if line.startswith(lead)]
    return line
