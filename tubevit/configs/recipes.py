"""Named training recipes (big_vision style): ``tubevit train --recipe NAME``.

A recipe is a YAML file in ``tubevit/configs/recipes/`` holding config sections like a run's
``config.yaml``, under a header of ``# key: value`` comment lines that state what it is for, the
command, the budget and the result to expect (``tubevit train --list-recipes`` prints them).
Resolution order, later wins: recipe <- ``--config`` <- shortcut flags <- ``--set``.

A recipe may hold per-size settings under ``by_preset: {tubevit_base: {...}, ...}`` (the paper's
optimiser settings differ for B and L/H, Table 10): the entry of the run's final preset is applied
right after the recipe's own keys, so ``--config``, flags and ``--set`` still override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["RECIPE_DIR", "list_recipes", "recipe_header", "recipe_updates", "format_recipes"]

RECIPE_DIR = Path(__file__).parent / "recipes"
HEADER_KEYS = ("recipe", "command", "budget", "expect")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _path(name: str) -> Path:
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; choose one of {list_recipes()} (tubevit train --list-recipes)")
    return path


def recipe_header(name: str) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a recipe (continuation lines ``#   ...`` join on)."""
    out: dict[str, str] = {}
    key = None
    for line in _path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        head, _, rest = text.partition(":")
        if head in HEADER_KEYS and rest:
            key = head
            out[key] = rest.strip()
        elif key and text:
            out[key] += " " + text
    return out


def recipe_updates(name: str, preset: str | None = None) -> tuple[list[tuple[str, Any]], dict]:
    """``(updates, by_preset)``: the recipe's dotted-key updates (sections recurse in the loader)
    and its per-preset table, applied by :func:`tubevit.configs.load.load_config`."""
    raw = yaml.safe_load(_path(name).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {name} must hold a mapping of config sections")
    by_preset = raw.pop("by_preset", {}) or {}
    return [(str(k), v) for k, v in raw.items()], by_preset


def format_recipes() -> str:
    lines = []
    for name in list_recipes():
        h = recipe_header(name)
        lines.append(f"{name}: {h.get('recipe', '')}")
        for key in ("command", "budget", "expect"):
            if key in h:
                lines.append(f"    {key}: {h[key]}")
    return "\n".join(lines)
