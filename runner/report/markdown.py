"""summary/report.md: the report's blocks (document) as markdown, readable on its own."""

from __future__ import annotations

from collections.abc import Sequence

from runner.report.contents import Contents
from runner.report.document import Block, Figure, Heading, Items, Table, Text, blocks, plot_titles


def table_lines(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    def row(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|").replace("\n", " ") for v in values) + " |"

    return [row(headers), "|" + "---|" * len(headers), *(row(values) for values in cells)]


def _block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text]
    if isinstance(block, Text):
        return [block.text]
    if isinstance(block, Table):
        return table_lines(block.headers, block.cells)
    if isinstance(block, Figure):
        title = plot_titles()[block.name]
        return [f"![{title}]({block.name}.png)"]
    assert isinstance(block, Items)
    return [f"- **{lead}**: {text}" if lead else f"- {text}" for lead, text in block.items]


def render(contents: Contents) -> str:
    """The whole report as markdown; its figures are the PNG files written next to it."""
    lines: list[str] = []
    for block in blocks(contents):
        lines += [*_block(block), ""]
    return "\n".join(lines)
