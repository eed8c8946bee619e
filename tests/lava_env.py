"""Whether Lava imports here, for the tests that run or inspect Lava networks.

Imported first by those tests: Lava sets the multiprocessing start method when it is imported, so it
must come before anything else can choose one."""
from __future__ import annotations

import pytest

from egru_deploy.errors import TargetUnavailable
from egru_deploy.targets.loihi2 import lava_compat

try:
    lava_compat.import_lava()
    LAVA_ERROR = None
except TargetUnavailable as e:
    LAVA_ERROR = str(e)
needs_lava = pytest.mark.skipif(LAVA_ERROR is not None, reason=f"Lava not importable: {LAVA_ERROR}")
