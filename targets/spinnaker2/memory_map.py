"""One flat 128 KB PE memory with fixed regions: the map both PE program builds (QEMU shim, board) and the
py-spinnaker2 application (``application.py``) share.  Defined here once; ``c_header()`` and ``ld_symbols()``
generate what the C program and ``pe/pe.ld`` are built with.

Why flat: public SpiNNaker2 applications address the PE's 128 KB SRAM as one space 0x00000-0x1FFFF and put
their data regions at fixed addresses anywhere in it (NESTML's generated apps, ``nest/nestml``
``pynestml/codegeneration/resources_spinnaker2/``: ``@NEURON_NAME@.py.jinja2`` at 4bde5dbec / df6119da6 has
neuron parameters at 0xDC00, a data-spec region at 0x10000 and a log at 0x1B000; at 7a6166267 an error log at
0xE000 and the data spec at 0xE900; ``qpe.ld.jinja2`` puts heap and stack at 0x1F000).  Their linker script
still names the first 32 KB "ITCM" and the rest "DTCM" (contiguous, 0x8000 = 32 K), and places all code in
the first 32 KB: our code stays there too (the link fails otherwise), everything else is one space.

    0x00000  PROGRAM   vectors, code, constants, .data, .bss          PROGRAM_BYTES (link fails beyond)
    REGIONS  DATA_SPEC magic 0xAD130AD6, version, region addresses and sizes (NESTML's data-spec header)
             STATUS    done flag, ticks run, error code, packet counters (written by the PE)
             LOG       the PE's error text (board runtime)
             PARAMS    runtime parameters and the key translation table (packed by ``pack_params``)
    IMAGE    IMAGE     the kernel's memory image (``images.pack``) or an input PE's preloaded sequence
             RECORD    after the image: the output population's per-tick record ("v" layout, NESTML:
                       per tick one word of tick number then one word per unit)
    0x1F800  STACK     2 KB
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

PE_MEMORY_BYTES = 128 * 1024  # SpiNNaker2 datasheet: 128 KB SRAM per PE (code and data)
CODE_WINDOW_END = 0x8000  # public SpiNNaker2 linker scripts keep code below 32 K (NESTML qpe.ld "ITCM")
PROGRAM_BYTES = 0x3000  # code + data + bss; the board build also links the runtime library (unknown size)
STACK_BYTES = 2048
DATA_SPEC_BYTES, STATUS_BYTES, LOG_BYTES, PARAMS_BYTES = 64, 64, 128, 1024

REGIONS_ADDRESS = PROGRAM_BYTES
DATA_SPEC_ADDRESS = REGIONS_ADDRESS
STATUS_ADDRESS = DATA_SPEC_ADDRESS + DATA_SPEC_BYTES
LOG_ADDRESS = STATUS_ADDRESS + STATUS_BYTES
PARAMS_ADDRESS = LOG_ADDRESS + LOG_BYTES
IMAGE_ADDRESS = PARAMS_ADDRESS + PARAMS_BYTES
STACK_ADDRESS = PE_MEMORY_BYTES - STACK_BYTES
IMAGE_CAPACITY = STACK_ADDRESS - IMAGE_ADDRESS  # image + record (the record only on output PEs, at run time)

# The data-spec header as NESTML's generated C reads it (data_specification.h.jinja2: magic, version,
# then region pointers).  Region order is ours.
DATA_SPEC_MAGIC, DATA_SPEC_VERSION = 0xAD130AD6, 0x00010000
REGIONS = ("params", "image", "record", "status", "log")
DATA_SPEC = struct.Struct("<II" + "I" * len(REGIONS) * 2)  # magic, version, addresses[5], bytes[5]

PARAMS_MAGIC, PARAMS_VERSION = 0x50524745, 1  # "EGRP"
MODE_KERNEL, MODE_INPUT = 0, 1
NO_CHANNEL = 0xFFFFFFFF  # record_channel: nothing recorded
NO_KEY = 0xFFFFFFFF  # out_trace_board_key: the PE may not send traces
PARAMS_FIELDS = ("magic", "version", "mode", "n_ticks", "timer_period", "out_kernel_key", "out_board_key",
                 "out_trace_board_key", "out_units", "record_units", "record_channel", "n_ranges")
PARAMS_HEADER = struct.Struct("<" + "I" * len(PARAMS_FIELDS))
KEY_RANGE = struct.Struct("<III")  # board key, number of keys, kernel key of the first
MAX_RANGES = (PARAMS_BYTES - PARAMS_HEADER.size) // KEY_RANGE.size

STATUS_MAGIC = 0x54534745  # "EGST"
STATUS_FIELDS = ("magic", "done", "ticks", "error", "dropped", "unrouted", "received", "sent", "recorded")
STATUS = struct.Struct("<" + "I" * len(STATUS_FIELDS))

INPUT_MAGIC, INPUT_VERSION = 0x4E494745, 1  # "EGIN"
INPUT_FIELDS = ("magic", "version", "n_units", "n_ticks", "n_words")
INPUT_HEADER = struct.Struct("<" + "I" * len(INPUT_FIELDS))

# app_init's codes beyond the kernel's pe_init codes (pe.h PE_OK .. PE_N_STATUS - 1)
APP_ERRORS = {  # name: (code, text)
    "BAD_DATA_SPEC": (100, "the data spec has a wrong magic or version, or its regions leave the PE or overlap"),
    "BAD_PARAMS": (101, "the params region has a wrong magic or version, or more key ranges than it holds"),
    "BAD_RECORD": (102, "the record region is smaller than record_units x n_ticks needs, or its channel is not 0/1"),
    "BAD_INPUT": (103, "the input sequence is malformed (magic, sizes, or a unit beyond n_units)"),
    "BAD_MODE": (104, "mode is neither kernel nor input"),
}

assert DATA_SPEC.size <= DATA_SPEC_BYTES and STATUS.size <= STATUS_BYTES and IMAGE_ADDRESS % 8 == 0


class MemoryMapError(ValueError):
    """Regions that do not fit the PE's memory (the caller turns it into a one-line user error)."""


@dataclass(frozen=True)
class KeyRange:
    board_key: int
    n_keys: int
    kernel_key: int


@dataclass(frozen=True)
class Params:
    """A PE's runtime parameters: how the application layer (pe/app.c) drives the kernel."""

    mode: int
    n_ticks: int  # 0: the harness decides (QEMU check runs)
    timer_period: int
    out_kernel_key: int  # kernel key of the PE's unit 0 (channel 0)
    out_board_key: int  # the key the network sends for it
    out_trace_board_key: int  # ... for its trace (channel 1); NO_KEY: none
    out_units: int
    record_units: int = 0
    record_channel: int = NO_CHANNEL
    ranges: tuple[KeyRange, ...] = ()

    def pack(self) -> bytes:
        if len(self.ranges) > MAX_RANGES:
            raise MemoryMapError(f"{len(self.ranges)} key ranges, but the params region holds {MAX_RANGES}")
        values = dict(magic=PARAMS_MAGIC, version=PARAMS_VERSION, n_ranges=len(self.ranges),
                      **{f: getattr(self, f) for f in PARAMS_FIELDS if hasattr(self, f)})
        head = PARAMS_HEADER.pack(*(values[f] for f in PARAMS_FIELDS))
        return head + b"".join(KEY_RANGE.pack(r.board_key, r.n_keys, r.kernel_key) for r in self.ranges)


def identity_params(key_base: int, n_units: int, channel_bit: int) -> Params:
    """What the QEMU check runs use: board keys are kernel keys (one range covering every key)."""
    return Params(MODE_KERNEL, 0, 0, key_base, key_base, key_base | channel_bit, n_units,
                  ranges=(KeyRange(0, 0xFFFFFFFF, 0),))


def record_bytes(record_units: int, n_ticks: int) -> int:
    """The "v" record: per tick, the tick number then one word per unit."""
    return 4 * (1 + record_units) * n_ticks if record_units else 0


def aligned8(n: int) -> int:
    return -(-n // 8) * 8


@dataclass(frozen=True)
class Regions:
    """Everything the host writes into one PE (addresses are fixed except the record's)."""

    params: Params
    image: bytes  # kernel image, or packed input sequence
    record_bytes: int = 0

    @property
    def record_address(self) -> int:
        return IMAGE_ADDRESS + aligned8(len(self.image))

    def check(self, where: str) -> None:
        need = aligned8(len(self.image)) + self.record_bytes
        if need > IMAGE_CAPACITY:
            extra = f" + {self.record_bytes:,} bytes of record" if self.record_bytes else ""
            raise MemoryMapError(f"{where}: its image of {len(self.image):,} bytes{extra} needs {need:,} bytes but a "
                                 f"PE has {IMAGE_CAPACITY:,} bytes from 0x{IMAGE_ADDRESS:05x} to its stack at "
                                 f"0x{STACK_ADDRESS:05x}")
        if len(self.params.pack()) > PARAMS_BYTES:
            raise MemoryMapError(f"{where}: params of {len(self.params.pack()):,} bytes exceed the "
                                 f"{PARAMS_BYTES:,}-byte params region")

    def data_spec(self) -> bytes:
        addresses = {"params": PARAMS_ADDRESS, "image": IMAGE_ADDRESS, "record": self.record_address,
                     "status": STATUS_ADDRESS, "log": LOG_ADDRESS}
        sizes = {"params": len(self.params.pack()), "image": len(self.image), "record": self.record_bytes,
                 "status": STATUS_BYTES, "log": LOG_BYTES}
        return DATA_SPEC.pack(DATA_SPEC_MAGIC, DATA_SPEC_VERSION, *(addresses[r] for r in REGIONS),
                              *(sizes[r] for r in REGIONS))

    def writes(self) -> list[tuple[int, bytes]]:
        """(byte address, bytes) the host sends; status, log and record are zeroed by the PE itself."""
        return [(DATA_SPEC_ADDRESS, self.data_spec()), (PARAMS_ADDRESS, self.params.pack()),
                (IMAGE_ADDRESS, self.image)]

    def blob(self) -> bytes:
        """The bytes from REGIONS_ADDRESS to the end of the image, as the QEMU build links them."""
        out = bytearray(IMAGE_ADDRESS - REGIONS_ADDRESS + len(self.image))
        for address, data in self.writes():
            out[address - REGIONS_ADDRESS:address - REGIONS_ADDRESS + len(data)] = data
        return bytes(out)


def words(data: bytes) -> list[int]:
    """Little-endian uint32 words (padded with zeros), as py-spinnaker2 sends memory (``add_mem_data_to_send``)."""
    data = data + bytes(-len(data) % 4)
    return np.frombuffer(data, "<u4").astype(np.int64).tolist()


def pack_input(values: np.ndarray) -> bytes:
    """An input PE's sequence: values (T, n) int -> header, then per tick a count and (unit, value) pairs of
    the non-zero values (the packets the host would have sent)."""
    values = np.asarray(values, np.int64)
    if values.size and (values.min() < -(1 << 31) or values.max() >= 1 << 31):
        raise MemoryMapError("an input value does not fit a 32-bit packet payload")
    body = []
    for row in values:
        unit = np.flatnonzero(row)
        pairs = np.empty((len(unit), 2), np.int64)
        pairs[:, 0], pairs[:, 1] = unit, row[unit]
        body += [np.array([len(unit)], np.int64), pairs.reshape(-1)]
    flat = np.concatenate(body) if body else np.zeros(0, np.int64)
    head = INPUT_HEADER.pack(INPUT_MAGIC, INPUT_VERSION, values.shape[1], values.shape[0], len(flat))
    return head + (flat & 0xFFFFFFFF).astype("<u4").tobytes()


def input_bytes(values: np.ndarray) -> int:
    return INPUT_HEADER.size + 4 * (values.shape[0] + 2 * int(np.count_nonzero(values)))


def decode_status(blob: bytes) -> dict:
    return dict(zip(STATUS_FIELDS, STATUS.unpack_from(blob)))


def decode_record(record_words, record_units: int, n_ticks: int) -> np.ndarray:
    """The "v" record -> (n_ticks, record_units) float32 values (each word holds a float32's bits)."""
    raw = np.asarray(record_words, np.int64).astype(np.uint32).reshape(n_ticks, 1 + record_units)
    return raw[:, 1:].view(np.float32)


def c_header() -> str:
    """pe_memory_map.h: the map and the region structs, for the C program (generated)."""
    def define(name, value):
        return f"#define {name} 0x{value:x}u"

    lines = ["/* Generated by egru_deploy.targets.spinnaker2.memory_map: do not edit. */",
             "#ifndef PE_MEMORY_MAP_H", "#define PE_MEMORY_MAP_H", "#include <stdint.h>", ""]
    for name in ("PE_MEMORY_BYTES", "CODE_WINDOW_END", "PROGRAM_BYTES", "REGIONS_ADDRESS", "DATA_SPEC_ADDRESS",
                 "STATUS_ADDRESS", "LOG_ADDRESS", "PARAMS_ADDRESS", "IMAGE_ADDRESS", "STACK_ADDRESS",
                 "DATA_SPEC_BYTES", "STATUS_BYTES", "LOG_BYTES", "PARAMS_BYTES", "DATA_SPEC_MAGIC",
                 "DATA_SPEC_VERSION", "PARAMS_MAGIC", "PARAMS_VERSION", "MODE_KERNEL", "MODE_INPUT", "NO_CHANNEL",
                 "NO_KEY", "STATUS_MAGIC", "INPUT_MAGIC", "INPUT_VERSION", "MAX_RANGES"):
        lines.append(define(f"MAP_{name}", globals()[name]))
    lines += [*(f"#define MAP_REGION_{r.upper()} {i}u" for i, r in enumerate(REGIONS)),
              f"#define MAP_N_REGIONS {len(REGIONS)}u", "",
              *(f"#define APP_{name} {code}u\n#define APP_{name}_TEXT \"{text}\""
                for name, (code, text) in APP_ERRORS.items()),
              "",
              "typedef struct {",
              "    uint32_t magic, version, address[MAP_N_REGIONS], bytes[MAP_N_REGIONS];",
              "} map_data_spec;",
              f"_Static_assert(sizeof(map_data_spec) == {DATA_SPEC.size}, \"map_data_spec layout\");",
              "typedef struct { uint32_t " + ", ".join(PARAMS_FIELDS) + "; } map_params;",
              f"_Static_assert(sizeof(map_params) == {PARAMS_HEADER.size}, \"map_params layout\");",
              "typedef struct { uint32_t board_key, n_keys, kernel_key; } map_key_range;",
              "typedef struct { uint32_t " + ", ".join(STATUS_FIELDS) + "; } map_status;",
              f"_Static_assert(sizeof(map_status) == {STATUS.size}, \"map_status layout\");",
              "typedef struct { uint32_t " + ", ".join(INPUT_FIELDS) + "; } map_input;",
              f"_Static_assert(sizeof(map_input) == {INPUT_HEADER.size}, \"map_input layout\");",
              "", "#endif", ""]
    return "\n".join(lines)


def ld_symbols() -> str:
    """pe_memory_map.ld: the map's symbols and MEMORY block, INCLUDEd by pe/pe.ld (generated).  HARNESS is
    QEMU's SSRAM2/3 at 0x20000000 (mps2-an386), outside the PE: only the QEMU shim's buffers use it."""
    values = {"PE_MEMORY_BYTES": PE_MEMORY_BYTES, "PE_CODE_WINDOW_END": CODE_WINDOW_END,
              "PE_PROGRAM_BYTES": PROGRAM_BYTES, "PE_REGIONS_ADDRESS": REGIONS_ADDRESS,
              "PE_IMAGE_ADDRESS": IMAGE_ADDRESS, "PE_STACK_ADDRESS": STACK_ADDRESS, "PE_STACK_BYTES": STACK_BYTES}
    memory = (f"    PROGRAM (rwx) : ORIGIN = 0x0, LENGTH = 0x{PROGRAM_BYTES:x}\n"
              f"    REGIONS (rw)  : ORIGIN = 0x{REGIONS_ADDRESS:x}, LENGTH = 0x{STACK_ADDRESS - REGIONS_ADDRESS:x}\n"
              f"    STACK (rw)    : ORIGIN = 0x{STACK_ADDRESS:x}, LENGTH = 0x{STACK_BYTES:x}\n"
              f"    HARNESS (rw)  : ORIGIN = 0x20000000, LENGTH = 4M\n")
    return ("/* Generated by egru_deploy.targets.spinnaker2.memory_map: do not edit. */\n"
            + "".join(f"{name} = 0x{value:x};\n" for name, value in values.items())
            + "MEMORY\n{\n" + memory + "}\n")


def describe() -> list[dict]:
    """The map as rows (for reports and docs)."""
    rows = [("program", 0, PROGRAM_BYTES), ("data spec", DATA_SPEC_ADDRESS, DATA_SPEC_BYTES),
            ("status", STATUS_ADDRESS, STATUS_BYTES), ("log", LOG_ADDRESS, LOG_BYTES),
            ("params", PARAMS_ADDRESS, PARAMS_BYTES), ("image + record", IMAGE_ADDRESS, IMAGE_CAPACITY),
            ("stack", STACK_ADDRESS, STACK_BYTES)]
    return [{"region": name, "address": f"0x{address:05x}", "bytes": size} for name, address, size in rows]
