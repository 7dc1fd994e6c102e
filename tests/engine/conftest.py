"""The engine tests share train_helpers.py (also run as a script by the subprocess tests); pytest
runs with --import-mode=importlib, so put this folder on the path for it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
