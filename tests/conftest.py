"""Shared test set-up: one torch thread (the suite runs beside other jobs), and ``tests/`` importable
so test modules can share helpers such as ``spec_numpy`` under ``--import-mode=importlib``."""
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
