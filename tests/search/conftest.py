"""The search tests reuse the tiny pretraining setup of tests/train (`tiny_run`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
