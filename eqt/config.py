"""Frozen dataclass configs that reject unknown keys (house style: nanoGPT's ``GPTConfig``).

Every model and experiment config subclasses :class:`Config`. ``from_dict`` is how YAML files and
checkpoints come back: an unknown key raises a one-line ``ValueError`` naming the key and the
nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, TypeVar

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: a frozen dataclass with validated construction from dictionaries."""

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build the config from a mapping, rejecting unknown keys.

        Args:
            values: field name to value.

        Returns:
            The config.

        Raises:
            ValueError: a key is not a field of this config.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                near = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
                raise ValueError(f"unknown key '{key}' for {cls.__name__}{hint}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dictionary (for YAML and checkpoints)."""
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (unknown keys rejected as in :meth:`from_dict`)."""
        return type(self).from_dict({**self.to_dict(), **changes})
