"""Makes the recording tests' helpers importable (the suite has no packages)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
