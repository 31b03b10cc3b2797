#!/usr/bin/env python3
"""Checks that code quoted in the docs is the code that is compiled.

In docs/*.md, a fenced code block right after a line `<!-- quote: PATH -->` (PATH relative to the
repository root) must equal that file, byte for byte apart from the final newline; after
`<!-- quote: PATH#NAME -->` it must equal the lines of PATH between `// [NAME]` and `// [/NAME]`.
Exit 1 names each block that drifted (with a unified diff) or whose file or region is missing.

    python3 scripts/check_doc_quotes.py [--root DIR]
"""
import argparse
import difflib
import re
import sys
from pathlib import Path

MARKER = re.compile(r"^<!-- quote: ([^\s#]+)(?:#(\S+))? -->$")


def quoted_text(source: Path, region):
    """The whole file, or the lines between `// [region]` and `// [/region]`; None if absent."""
    text = source.read_text(encoding="utf-8").rstrip("\n")
    if region is None:
        return text
    lines = [line.strip() for line in text.splitlines()]
    try:
        start, end = lines.index(f"// [{region}]"), lines.index(f"// [/{region}]")
    except ValueError:
        return None
    return "\n".join(text.splitlines()[start + 1:end])


def quoted_blocks(doc: Path):
    """(line number, path, region or None, block text) for each quoted block of doc."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            yield i + 1, match.group(1), match.group(2), None
            continue
        end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith("```")), None)
        yield i + 1, match.group(1), match.group(2), None if end is None else "\n".join(lines[i + 2:end])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    errors, checked = [], 0
    for doc in sorted((args.root / "docs").glob("*.md")):
        for line, path, region, block in quoted_blocks(doc):
            where = f"{doc.relative_to(args.root)}:{line}"
            source = args.root / path
            text = quoted_text(source, region) if source.is_file() else None
            if block is None:
                errors.append(f"{where}: the quote marker is not followed by a fenced code block")
            elif text is None:
                errors.append(f"{where}: quotes {path}{'#' + region if region else ''}, which does not exist")
            else:
                checked += 1
                if text != block:
                    diff = "\n".join(difflib.unified_diff(text.splitlines(), block.splitlines(), path, where, lineterm=""))
                    errors.append(f"{where}: the quoted block differs from {path}:\n{diff}")
    for e in errors:
        print(f"error: {e}")
    print(f"doc quotes: {checked} checked, {len(errors)} errors")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
