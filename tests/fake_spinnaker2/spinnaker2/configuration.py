"""FAKE spinnaker2.configuration: PEConfig, MemoryRegion [NESTML]."""
from __future__ import annotations

from spinnaker2._track import Tracked
from spinnaker2.coordinates import WordAddr

PE_MEMORY_WORDS = 128 * 1024 // 4  # a PE's 128 KB (SpiNNaker2 datasheet)


class MemoryRegion(Tracked):
    """MemoryRegion(word address, size in words) [NESTML]."""

    def __init__(self, address, size):
        if not isinstance(address, WordAddr):
            raise TypeError("fake MemoryRegion: expected a WordAddr (ByteAddr(...).to_WordAddr())")
        if size < 0 or address + size > PE_MEMORY_WORDS:
            raise ValueError(f"fake MemoryRegion: words {int(address)}..+{size} leave the PE")
        self.address, self.size = int(address), int(size)


class PEConfig(Tracked):
    """PEConfig(pe, app name, mem_file) with memory to send and regions to read [NESTML]."""

    def __init__(self, pe, name, mem_file):
        self.pe, self.name, self.mem_file = pe, name, mem_file
        self.mem_data_to_send = []  # (word address, words)
        self.mem_regions_to_read = {}

    def add_mem_data_to_send(self, address, data):
        if not isinstance(address, WordAddr):
            raise TypeError("fake add_mem_data_to_send: expected a WordAddr")
        data = list(data)
        if any(not isinstance(w, int) or not 0 <= w < 1 << 32 for w in data):
            raise ValueError("fake add_mem_data_to_send: words must be ints in 0 .. 2^32 - 1")
        if address + len(data) > PE_MEMORY_WORDS:
            raise ValueError(f"fake add_mem_data_to_send: words {int(address)}..+{len(data)} leave the PE")
        for other, words in self.mem_data_to_send:
            if address < other + len(words) and other < address + len(data):
                raise ValueError("fake add_mem_data_to_send: overlapping writes")
        self.mem_data_to_send.append((int(address), data))

    def add_mem_region_to_read(self, name, region):
        if not isinstance(region, MemoryRegion):
            raise TypeError("fake add_mem_region_to_read: expected a MemoryRegion")
        self.mem_regions_to_read[name] = region
