"""FAKE py-spinnaker2 for tests: only the surface public users of py-spinnaker2 show (``_surface.PUBLIC``,
each name with its source) plus the few names marked UNVERIFIED (``_surface.UNVERIFIED``).  It runs no
network itself: ``hardware.EXECUTOR`` (set by a test) stands in for the chip.  Never installed; tests put
``tests/fake_spinnaker2`` on sys.path.

Every object records the attributes code outside this package touches (``accessed``), so a test can check
that the code under test stays inside the surface.
"""
from spinnaker2 import _track

accessed = _track.accessed
