"""A view: a partition of the K code levels (slots) into blocks.

Pi_A q, the projection of q onto views A, is the product of q's block marginals;
one block means no projection at all, singletons the fully factorized family.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    blocks: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        levels = sorted(level for block in self.blocks for level in block)
        if not self.blocks or any(not block for block in self.blocks) or levels != list(range(len(levels))):
            raise ValueError(f"a view must partition levels 0..K-1 into non-empty blocks, got {self.blocks}")
        object.__setattr__(self, "blocks", tuple(sorted(tuple(sorted(b)) for b in self.blocks)))

    @classmethod
    def finest(cls, levels: int) -> "View":
        return cls(tuple((k,) for k in range(levels)))

    @classmethod
    def coarsest(cls, levels: int) -> "View":
        return cls((tuple(range(levels)),))

    @property
    def levels(self) -> int:
        return sum(len(block) for block in self.blocks)

    @property
    def size(self) -> int:
        """Number of blocks (slots kept apart by the view)."""
        return len(self.blocks)

    def merge(self, i: int, j: int) -> "View":
        """The wider view with blocks i and j joined."""
        if i == j or not (0 <= i < self.size and 0 <= j < self.size):
            raise ValueError(f"cannot merge blocks {i} and {j} of a view with {self.size} blocks")
        rest = [b for k, b in enumerate(self.blocks) if k not in (i, j)]
        return View(tuple(rest) + (self.blocks[i] + self.blocks[j],))

    def widened(self) -> "View | None":
        """The next wider view the gate tries: the two blocks holding the lowest levels joined."""
        return self.merge(0, 1) if self.size > 1 else None
