"""FAKE spinnaker2.coordinates: ByteAddr, to_WordAddr [NESTML]."""
from spinnaker2 import _track


class ByteAddr(int):
    """A byte address [NESTML: class attributes such as ByteAddr(0xE900)]."""

    def to_WordAddr(self):  # noqa: N802 (py-spinnaker2's name, NESTML)
        if _track._outside():
            _track.accessed.add("coordinates.ByteAddr.to_WordAddr")
        if self % 4:
            raise ValueError(f"fake ByteAddr: 0x{int(self):x} is not word aligned")
        return WordAddr(int(self) // 4)


class WordAddr(int):
    """A word address (byte address / 4: ASSUMED from the name; never constructed by code under test)."""
