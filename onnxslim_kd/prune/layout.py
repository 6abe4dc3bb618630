"""Where a tensor's channels come from, and the shared slicing arithmetic.

A tensor's channel axis is a concatenation of segments; each segment is a range of one
channel *space* (the channels created by one producer, shared by everything coupled to
it). Concat joins segments, Split/Slice cut them, Flatten repeats each channel over the
spatial positions. Every rule and every rewrite computes kept positions through
`kept_positions`, so that arithmetic lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Channels [start, stop) of space `space`, each repeated `repeat` times in a row."""

    space: int
    start: int
    stop: int
    repeat: int = 1

    @property
    def width(self) -> int:
        return (self.stop - self.start) * self.repeat


@dataclass(frozen=True)
class Layout:
    """The segments along `axis` of a tensor of rank `rank`."""

    axis: int
    rank: int
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(s.width for s in self.segments)

    def with_axis(self, axis: int, rank: int) -> Layout:
        return Layout(axis, rank, self.segments)

    def repeated(self, factor: int) -> Layout:
        """Each channel spread over `factor` consecutive positions (Flatten of C x H x W)."""
        segments = tuple(
            Segment(s.space, s.start, s.stop, s.repeat * factor) for s in self.segments
        )
        return Layout(self.axis, self.rank, segments)

    def sub_range(self, start: int, stop: int) -> Layout | None:
        """The layout of positions [start, stop); None when it cuts through a repeat."""
        out, offset = [], 0
        for seg in self.segments:
            lo, hi = max(start, offset), min(stop, offset + seg.width)
            if lo < hi:
                if (lo - offset) % seg.repeat or (hi - offset) % seg.repeat:
                    return None
                first = seg.start + (lo - offset) // seg.repeat
                last = seg.start + (hi - offset) // seg.repeat
                out.append(Segment(seg.space, first, last, seg.repeat))
            offset += seg.width
        return Layout(self.axis, self.rank, tuple(out))


KeepLookup = Callable[[int], np.ndarray]


def kept_positions(layout: Layout, kept: KeepLookup) -> np.ndarray:
    """Positions along the layout's axis that survive, given each space's kept channels."""
    parts, offset = [], 0
    for seg in layout.segments:
        channels = kept(seg.space)
        inside = channels[(channels >= seg.start) & (channels < seg.stop)] - seg.start
        positions = inside[:, None] * seg.repeat + np.arange(seg.repeat)[None, :]
        parts.append(offset + positions.ravel())
        offset += seg.width
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def take(array: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Keep `positions` along `axis` (the single slicing primitive of the rewrite)."""
    return np.take(array, positions, axis=axis)
