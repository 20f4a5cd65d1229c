"""The Docker compose section of docs/operating.md, run as a user would type it, and its outputs
compared: `section_blocks` pairs each bash block of the section with the output block shown after
it; tests/doc_blocks.py has the shell and the comparison every page's runner uses.
"""

from __future__ import annotations

from pathlib import Path

from tests.doc_blocks import Block, Shell, normalised, page_blocks

__all__ = ["PAGE", "SECTION", "Block", "Shell", "normalised", "section_blocks"]

SECTION = "### Docker compose"
PAGE = "docs/operating.md"


def section_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    start = text.index(f"\n{SECTION}\n")
    return page_blocks(text[start : text.index("\n### ", start + 1)])
