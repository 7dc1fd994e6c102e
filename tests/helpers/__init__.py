"""Helpers shared by several test folders. ``tests`` is a package (every folder has an
``__init__.py``), so test modules import these as ``tests.helpers.<module>`` under plain ``pytest``
and ``python -m pytest`` alike; scripts that subprocess tests launch run as ``python -m
tests.<...>`` from the repository root (``ROOT``), so no test touches ``sys.path``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

