"""Where concepts come from: the running Python, user files, WordNet.

A source yields `ConceptRecord`s whose relations name other records by key; the
builder turns keys into concept ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConceptRecord:
    key: str
    text: str
    kind: str = "text"
    source: str = ""
    relations: list[tuple[str, str, float]] = field(default_factory=list)
    validation: str = "none"

    def relate(self, target_key: str, relation_type: str, weight: float = 1.0) -> None:
        self.relations.append((target_key, relation_type, weight))
