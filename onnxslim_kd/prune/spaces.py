"""Channel spaces: union-find over the channel sets that must be pruned together."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Space:
    """A set of coupled channels; `origin` names the producer that created it."""

    size: int
    origin: str
    blocked: list[str] = field(default_factory=list)
    groups: int = 1  # grouped convs: every group must keep the same number of channels
    group_attr_nodes: list[str] = field(default_factory=list)  # depthwise convs to rewrite
    unit: int = 1  # channels per element: an attention head of `unit` channels is kept whole
    lossy: list[str] = field(default_factory=list)  # why pruning it is not exact (LayerNorm)


class Spaces:
    """Union-find of spaces; a merged space is blocked if any part was."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._spaces: list[Space] = []

    def new(self, size: int, origin: str, blocked: str | None = None) -> int:
        self._parent.append(len(self._parent))
        self._spaces.append(Space(size, origin, [blocked] if blocked else []))
        return len(self._parent) - 1

    def find(self, index: int) -> int:
        while self._parent[index] != index:
            self._parent[index] = self._parent[self._parent[index]]
            index = self._parent[index]
        return index

    def __getitem__(self, index: int) -> Space:
        return self._spaces[self.find(index)]

    def union(self, a: int, b: int) -> int:
        """Merge two equally sized spaces; keep the older one's origin."""
        ra, rb = sorted((self.find(a), self.find(b)))
        if ra == rb:
            return ra
        keep, gone = self._spaces[ra], self._spaces[rb]
        if keep.size != gone.size:
            raise ValueError(f"cannot couple spaces of {keep.size} and {gone.size} channels")
        keep.blocked += gone.blocked
        keep.groups = math.lcm(keep.groups, gone.groups)
        keep.group_attr_nodes += gone.group_attr_nodes
        keep.unit = max(keep.unit, gone.unit)
        keep.lossy += [reason for reason in gone.lossy if reason not in keep.lossy]
        self._parent[rb] = ra
        return ra

    def block(self, index: int, reason: str) -> None:
        space = self[index]
        if reason not in space.blocked:
            space.blocked.append(reason)

    def roots(self) -> list[int]:
        return [i for i in range(len(self._parent)) if self.find(i) == i]
