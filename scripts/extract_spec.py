"""Extract the one OpenAPI document embedded in a Mountsea docs page.

Each docs page carries its OpenAPI 3 document in a fenced block whose info string
names the language and the operation, e.g. ````` ````yaml GET /producer/tasks `````.
This module finds exactly one such block and returns its text verbatim.

Usage: ``python scripts/extract_spec.py PAGE.md OUT.yaml``
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import attrs

__all__ = ["ExtractError", "SpecBlock", "extract_spec", "main"]

# An opening fence: three or more backticks, then `yaml` and (optionally) the
# operation the page documents. CommonMark closes a fence with a run of the same
# character at least as long as the opening one, which the backreference enforces.
_OPENING = re.compile(r"^(?P<fence>`{3,})[ \t]*ya?ml(?:[ \t]+(?P<operation>[^`\n]*?))?[ \t]*$")


class ExtractError(Exception):
    """The page does not hold exactly one OpenAPI block."""


@attrs.frozen
class SpecBlock:
    """One OpenAPI document found on a page."""

    operation: str | None  # e.g. "GET /producer/tasks", from the fence's info string
    text: str  # the YAML exactly as written on the page, ending with a newline


def _yaml_blocks(page: str) -> list[SpecBlock]:
    blocks: list[SpecBlock] = []
    lines = page.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        opening = _OPENING.match(lines[i].rstrip("\r\n"))
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        closing = re.compile(rf"^`{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i].rstrip("\r\n")):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            msg = f"a ```yaml block opened with {fence} is never closed"
            raise ExtractError(msg)
        text = "".join(body)
        blocks.append(SpecBlock(opening["operation"] or None, text if text.endswith("\n") else text + "\n"))
        i += 1
    return blocks


def _is_openapi(text: str) -> bool:
    return re.search(r"^openapi:[ \t]*['\"]?3\.", text, flags=re.MULTILINE) is not None


def extract_spec(page: str, *, source: str = "page") -> SpecBlock:
    """Return the single OpenAPI 3 block of ``page``; raise `ExtractError` otherwise."""
    found = [block for block in _yaml_blocks(page) if _is_openapi(block.text)]
    if not found:
        msg = f"{source}: no OpenAPI block found (expected one ```yaml block starting with 'openapi: 3.x')"
        raise ExtractError(msg)
    if len(found) > 1:
        operations = ", ".join(block.operation or "?" for block in found)
        msg = f"{source}: {len(found)} OpenAPI blocks found ({operations}); expected exactly one"
        raise ExtractError(msg)
    return found[0]


def main(argv: list[str] | None = None) -> int:
    """Command line: extract PAGE's spec into OUT (or stdout with ``-``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a docs page (Markdown)")
    parser.add_argument("out", help="where to write the YAML, or - for stdout")
    args = parser.parse_args(argv)
    try:
        block = extract_spec(args.page.read_text(encoding="utf-8"), source=str(args.page))
    except (OSError, ExtractError) as exc:
        print(f"extract_spec: {exc}", file=sys.stderr)
        return 1
    if args.out == "-":
        sys.stdout.write(block.text)
    else:
        Path(args.out).write_text(block.text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
