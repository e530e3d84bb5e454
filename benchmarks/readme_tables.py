"""README tables rendered from committed benchmark JSON, between a pair of HTML comment markers."""

from __future__ import annotations

from pathlib import Path


def replace_between(readme: Path, begin: str, end: str, body: str) -> None:
    """Replace what lies between the `begin` and `end` markers of `readme` with `body`."""
    text = readme.read_text()
    start = text.index(begin) + len(begin)
    stop = text.index(end, start)
    readme.write_text(text[:start] + "\n\n" + body.strip() + "\n\n" + text[stop:])


def between(readme: Path, begin: str, end: str) -> str:
    """What lies between the markers (for the test that the README's tables are the committed JSON's)."""
    text = readme.read_text()
    start = text.index(begin) + len(begin)
    return text[start: text.index(end, start)].strip()
