"""Progress bars on stderr, so stdout stays clean for `--json`."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: Set by the CLI's `--quiet`; the library is quiet unless a caller turns bars on.
ENABLED = False


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Wrap `items` in a progress bar when bars are enabled and stderr is a terminal."""
    if not ENABLED:
        return iter(items)
    return iter(
        tqdm(items, desc=description, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)
    )
