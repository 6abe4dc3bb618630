"""Write the README's command-line reference: every command's usage, as `--help` prints it.

The block between the `cli-reference` markers in README.md is replaced; `--check` exits 1
when it is out of date (tests/test_cli.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- cli-reference: begin -->", "<!-- cli-reference: end -->"
WIDTH = 100


def render() -> str:
    """The usage of every command at a fixed width, in one fenced block."""
    os.environ["COLUMNS"] = str(WIDTH + 2)  # argparse wraps at the terminal width - 2
    sys.path.insert(0, str(ROOT))
    from cli.main import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    usages = [
        command.format_usage().removeprefix("usage: ").rstrip()
        for command in commands.choices.values()
    ]
    return "\n".join([BEGIN, "```", "\n".join(usages), "```", END])


def current(readme: str) -> str:
    start, stop = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[start:stop]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args()
    path = ROOT / "README.md"
    readme = path.read_text()
    fresh = render()
    if args.check:
        return 0 if current(readme) == fresh else 1
    path.write_text(readme.replace(current(readme), fresh))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
