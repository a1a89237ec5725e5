"""Report blocks and their two renderings: markdown (images linked) and one self-contained
HTML page (images embedded as base64 data URIs, inline CSS, no script, nothing fetched).

Text blocks may use two bits of inline markdown, ``**bold**`` and ```code```; both renderers
understand them.

Example:
    >>> blocks = [Heading("Results", 1), Text("ACC is **high**"), Table(["a"], [["1"]])]
    >>> print(render_markdown(blocks, "."))
    # Results
    <BLANKLINE>
    ACC is **high**
    <BLANKLINE>
    | a |
    |---|
    | 1 |
    <BLANKLINE>
    >>> "<strong>high</strong>" in render_html(blocks)
    True
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from anpyc.report.tables import markdown_table


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    path: Path  # a PNG on disk
    caption: str


Block = Heading | Text | Table | Figure


def render_markdown(blocks: list[Block], root: str | Path) -> str:
    """Markdown with images linked relative to ``root`` (where report.md is written)."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(markdown_table(b.header, b.rows))
        elif isinstance(b, Figure):
            rel = Path(os.path.relpath(b.path, root)).as_posix()
            out.append(f"![{b.caption}]({rel})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    s = html.escape(text)
    s = _CODE.sub(r"<code>\1</code>", s)
    return _BOLD.sub(r"<strong>\1</strong>", s)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #d62728; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
td { white-space: nowrap; } th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(blocks: list[Block]) -> str:
    """One self-contained HTML page (UTF-8) with the images embedded."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "anpyc report")
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 1), 6)
            body.append(f"<h{level}>{_inline(b.text)}</h{level}>")
        elif isinstance(b, Text):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.header)
            rows = "\n".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in b.rows
            )
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>")
        elif isinstance(b, Figure):
            alt = html.escape(b.caption, quote=True)
            body.append(
                f'<figure id="{html.escape(Path(b.path).stem, quote=True)}">'
                f'<img src="{_data_uri(b.path)}" alt="{alt}">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
