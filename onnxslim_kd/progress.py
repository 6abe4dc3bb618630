"""Progress for people and for CI logs, always on stderr so stdout stays clean for `--json`.

Four modes, set by the CLI (the library is silent unless a caller chooses one):
- "bars": stderr is a terminal: progress bars, and every finished stage or epoch leaves
  one line above them that stays on screen;
- "lines": stderr is a file or pipe (CI, `| tee`): no bars, one line per stage and epoch;
- "json": `--log-format json`: the same events as JSON lines;
- "off": `--quiet`, or library use.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

MODES = ("off", "bars", "lines", "json")
MODE = "off"
_muted = 0  # depth of `muted()` blocks: their events are not reported


def configure(quiet: bool, log_format: str = "text", tty: bool | None = None) -> None:
    """Choose the mode from the CLI's --quiet, --log-format and whether stderr is a TTY."""
    global MODE
    tty = sys.stderr.isatty() if tty is None else tty
    if quiet:
        MODE = "off"
    elif log_format == "json":
        MODE = "json"
    else:
        MODE = "bars" if tty else "lines"


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Wrap `items` in a progress bar in "bars" mode; otherwise iterate them as they are."""
    if MODE != "bars":
        return iter(items)
    return iter(
        tqdm(items, desc=description, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)
    )


@contextmanager
def muted() -> Iterator[None]:
    """Leave out the events of inner work (the search's untuned builds) from the log."""
    global _muted
    _muted += 1
    try:
        yield
    finally:
        _muted -= 1


def report(stage: str, message: str, **fields: Any) -> None:
    """One event of `stage` (a stage finished, an epoch ended): a line, or a JSON object."""
    if MODE == "off" or _muted:
        return
    if MODE == "json":
        record = {"stage": stage, "message": message, **fields}
        sys.stderr.write(json.dumps(record, default=_plain) + "\n")
        sys.stderr.flush()
        return
    line = f"onnxslim-kd {stage}: {message}"
    if MODE == "bars":
        tqdm.write(line, file=sys.stderr)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def warn(stage: str, messages: Iterable[str]) -> None:
    """Warnings on stderr, those that differ only in names and numbers grouped on one line
    with a count (eleven 'folded N inputs into the bias of X' become one)."""
    if MODE == "off":
        return
    for first, others in _grouped(list(messages)):
        if MODE == "json":
            report(stage, first, warning=True, count=1 + len(others))
            continue
        text = f"warning: {first}"
        if others:
            names = [found.group(0) for m in others if (found := re.search(r"'[^']*'", m))]
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            text += f" (and {len(others)} more like it{': ' + shown if shown else ''})"
        report(stage, text)


def _grouped(messages: list[str]) -> list[tuple[str, list[str]]]:
    """Messages in first-seen order, each with the later ones of the same template."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for message in messages:
        template = re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'", "'X'", message))
        if template in groups:
            groups[template][1].append(message)
        else:
            groups[template] = (message, [])
    return list(groups.values())


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
