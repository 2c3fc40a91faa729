"""What a cached evaluation step did: asked for, distinct, computed now, served from the cache.

One class counts both cached steps of :mod:`ume.eval.run`: reasoning (T-CoTs,
:class:`~ume.eval.reason.CachedReasoner`) and encoding (embeddings,
:class:`~ume.eval.encode.CachedEncoder`). In records (the ``.cost.json`` files) what was
computed is named by the step, ``generated`` T-CoTs or ``encoded`` inputs, and tokens are
counted for T-CoTs only.

>>> st = CacheStats("encoding", requested=4, unique=3, computed=1, cached=2, seconds=2.0)
>>> st.to_dict()["encoded"], st.to_dict()["seconds_per_item"]
(1, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

#: what each step calls the items it computed
COMPUTED_NAME = {"reasoning": "generated", "encoding": "encoded"}


@dataclass
class CacheStats:
    """Counts of one cached step (one call, or several accumulated with :meth:`add`)."""

    step: Literal["reasoning", "encoding"]
    requested: int = 0  # items asked for (duplicates included)
    unique: int = 0  # distinct keys among them
    computed: int = 0  # T-CoTs generated / inputs encoded now
    cached: int = 0  # distinct keys served from the cache
    tokens_generated: int = 0  # tokens written now (reasoning)
    tokens_cached: int = 0  # tokens the cache saved (reasoning)
    reduced: int = 0  # inputs that gave up visual tokens to fit max_length (encoding)
    seconds: float = 0.0  # wall time, cache look-ups included

    def add(self, other: CacheStats) -> None:
        if other.step != self.step:
            raise ValueError(f"cannot add {other.step} counts to {self.step} counts")
        for f in fields(self):
            if f.name != "step":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "requested": self.requested,
            "unique": self.unique,
            COMPUTED_NAME[self.step]: self.computed,
            "cached": self.cached,
        }
        if self.step == "reasoning":
            d |= {"tokens_generated": self.tokens_generated, "tokens_cached": self.tokens_cached}
        else:  # the length rule of ume.inputs: visuals (or item text) given up, T-CoT kept
            d["length_reduced"] = self.reduced
        d["seconds"] = self.seconds
        d["seconds_per_item"] = self.seconds / self.requested if self.requested else 0.0
        return d
