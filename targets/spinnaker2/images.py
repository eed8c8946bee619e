"""PE memory images: one binary per PE (what the host writes into the PE's DTCM, and what the QEMU
build links into ``.pe_image``) plus a JSON map of where every section lies.

The layout is defined here once: ``HEADER_FIELDS`` and ``SECTIONS`` give the header struct and the
section order, ``c_header()`` generates the C declaration the PE program is compiled with, and
``section_sizes()`` is the size model the mapping packs PEs with (``pack()`` asserts it is exact).

Packet keys: ``population << 20 | channel << 19 | unit``.  Population 0 is the host's input;
graph layer ``i`` sends as population ``i + 1``; channel 1 carries an EGRU layer's trace.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU
from egru_deploy.profiles import LookupTable, Profile

if TYPE_CHECKING:
    from egru_deploy.targets.spinnaker2.mapping import PE

MAGIC = 0x32534745  # "EGS2"
VERSION = 3  # 2: zoneout_gain; 3: csr8b
KIND_EGRU, KIND_LINEAR = 0, 1
# csr8/csr16: column indices of 1 or 2 bytes.  csr8b: 1-byte indices in banks of BANK_COLUMNS columns;
# the non-zeros are ordered by (bank, row, column) and ptr holds banks * rows + 1 uint16 offsets,
# ptr[b * rows + r] .. ptr[b * rows + r + 1] being row r's entries in bank b (column 256 b + idx).
FORMATS = {"dense": 0, "csr8": 1, "csr16": 2, "csr8b": 3}
MATRIX_X, MATRIX_H = 0, 1  # a source feeds the input kernel or the recurrent kernel

UNIT_BITS = 19
CHANNEL_BIT = 1 << UNIT_BITS
POPULATION_SHIFT = UNIT_BITS + 1
HOST_POPULATION = 0
COUNTERS = ("accumulator", "state", "event", "output", "dropped")  # saturations (as the spec counts) + stray packets
SECTION_ALIGN = 8  # int64 accumulators
CSR_PTR_LIMIT = 1 << 16  # row pointers are uint16
BANK_COLUMNS = 256  # csr8b: the columns a 1-byte index reaches

# (name, struct code): 32-bit fields, then 16-bit, then 8-bit, so the C struct has no implicit padding.
SECTIONS = ("sources", "x_ptr", "x_idx", "x_val", "h_ptr", "h_idx", "h_val", "bias", "rbias", "thr",
            "lut_sigmoid", "lut_tanh", "acc_x", "acc_h", "cell", "trace", "counters")
STATE_SECTIONS = ("acc_x", "acc_h", "cell", "trace", "counters")  # zeroed at every reset
HEADER_FIELDS = (
    ("magic", "I"), ("key_base", "I"), ("first_tick", "I"), ("x_rows", "I"), ("h_rows", "I"),
    ("sigmoid_offset", "i"), ("tanh_offset", "i"), ("trace_gain", "i"), ("zoneout_gain", "i"),
    *((f"off_{name}", "I") for name in SECTIONS),
    ("state_begin", "I"), ("state_end", "I"), ("image_bytes", "I"),
    ("version", "H"), ("kind", "H"), ("n_units", "H"), ("n_sources", "H"), ("lut_entries", "H"), ("pad16", "H"),
    ("x_format", "B"), ("h_format", "B"), ("use_trace", "B"), ("relu", "B"),
    ("shift_x", "b"), ("shift_h", "b"), ("state_frac", "B"), ("event_shift", "B"),
    ("acc_bits", "B"), ("state_bits", "B"), ("event_bits", "B"), ("out_bits", "B"),
    ("sigmoid_shift", "B"), ("tanh_shift", "B"), ("pad8_0", "B"), ("pad8_1", "B"),
)
HEADER = struct.Struct("<" + "".join(code for _, code in HEADER_FIELDS))
SOURCE_ENTRY = struct.Struct("<II")  # population key (packet key >> 19), matrix
_C_TYPES = {"I": "uint32_t", "i": "int32_t", "H": "uint16_t", "B": "uint8_t", "b": "int8_t"}


class ImageError(UserError):
    """A layer cannot be laid out in PE memory (value range, sizes). One line."""


def packet_key(population: int, unit: int, channel: int = 0) -> int:
    return (population << POPULATION_SHIFT) | (channel * CHANNEL_BIT) | unit


def population_key(population: int, channel: int = 0) -> int:
    """The part of a packet key a PE's source table matches (key >> UNIT_BITS)."""
    return packet_key(population, 0, channel) >> UNIT_BITS


def aligned(n: int) -> int:
    return -(-n // SECTION_ALIGN) * SECTION_ALIGN


def banks(cols: int) -> int:
    """csr8b: the number of BANK_COLUMNS-column banks of a matrix with ``cols`` columns."""
    return -(-cols // BANK_COLUMNS)


def weight_bytes(fmt: str, rows: int, cols: int, nnz: int) -> dict[str, int]:
    """Bytes of the ptr/idx/val sections of a [rows, cols] int8 matrix stored as ``fmt``."""
    if fmt == "dense":
        return {"ptr": 0, "idx": 0, "val": rows * cols}
    if fmt == "csr8b":
        return {"ptr": 2 * (banks(cols) * rows + 1), "idx": nnz, "val": nnz}
    return {"ptr": 2 * (rows + 1), "idx": nnz * (1 if fmt == "csr8" else 2), "val": nnz}


def choose_format(rows: int, cols: int, nnz: int) -> str:
    """The smallest storage of a weight slice; CSR only where it saves memory and its pointers fit.

    Up to 256 columns csr8 (csr8b would be the same bytes); wider, csr16 or csr8b, whichever is smaller
    (csr8b's extra row pointers against csr16's second index byte); ties go to the earlier format."""
    candidates = ["dense"]
    if nnz < CSR_PTR_LIMIT:
        candidates += ["csr8"] if cols <= BANK_COLUMNS else ["csr8b", "csr16"] if cols <= 1 << 16 else ["csr8b"]

    def total(fmt: str) -> int:
        return sum(aligned(b) for b in weight_bytes(fmt, rows, cols, nnz).values())

    return min(candidates, key=lambda fmt: (total(fmt), candidates.index(fmt)))


def section_sizes(kind: str, n_units: int, x_rows: int, h_rows: int, x_format: str, x_nnz: int,
                  h_format: str | None, h_nnz: int, lut_entries: int) -> dict[str, int]:
    """Unaligned byte size of every section of a PE image (``header`` included)."""
    egru = kind == "egru"
    cols = 3 * n_units if egru else n_units
    x = weight_bytes(x_format, x_rows, cols, x_nnz)
    h = weight_bytes(h_format, h_rows, cols, h_nnz) if egru else {"ptr": 0, "idx": 0, "val": 0}
    return {
        "header": HEADER.size,
        "sources": SOURCE_ENTRY.size * (2 if egru else 1),
        "x_ptr": x["ptr"], "x_idx": x["idx"], "x_val": x["val"],
        "h_ptr": h["ptr"], "h_idx": h["idx"], "h_val": h["val"],
        "bias": 4 * cols, "rbias": 4 * cols if egru else 0, "thr": 4 * n_units if egru else 0,
        "lut_sigmoid": 2 * lut_entries if egru else 0, "lut_tanh": 2 * lut_entries if egru else 0,
        "acc_x": 8 * cols, "acc_h": 8 * cols if egru else 0,
        "cell": 4 * n_units if egru else 0, "trace": 4 * n_units if egru else 0,
        "counters": 4 * len(COUNTERS),
    }


def image_bytes(sizes: dict[str, int]) -> int:
    return sum(aligned(b) for b in sizes.values())


def lookup_table(profile: Profile) -> LookupTable:
    if not isinstance(profile.activation, LookupTable):
        raise ImageError(f"profile {profile.name!r}: SpiNNaker2 PEs need lookup-table activations, "
                         f"got {profile.activation.kind}")
    return profile.activation


def lut_parameters(lut: LookupTable, fn: str, frac: int) -> tuple[int, int]:
    """(offset, shift) of ``LookupTable.index``: index = clip((a + offset) >> shift, 0, entries - 1)."""
    log2_range = lut.sigmoid_log2_range if fn == "sigmoid" else lut.tanh_log2_range
    return 1 << (frac + log2_range), frac + log2_range + 1 - lut.index_bits


@dataclass(frozen=True)
class WeightSlice:
    """The int8 weights one PE holds: rows = source units, columns = its gate rows (z, r, g blocks)."""

    dense: np.ndarray  # [rows, cols] int8

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.dense))

    def sections(self, fmt: str) -> tuple[bytes, bytes, bytes]:
        if fmt == "dense":
            return b"", b"", np.ascontiguousarray(self.dense, np.int8).tobytes()
        rows, cols = np.nonzero(self.dense)  # row-major order: per row, ascending columns
        if fmt == "csr8b":
            n_rows = self.dense.shape[0]
            segment = (cols // BANK_COLUMNS) * n_rows + rows  # (bank, row): bank-major
            order = np.argsort(segment, kind="stable")  # keeps ascending columns within a segment
            rows, cols, segment = rows[order], cols[order], segment[order]
            ptr = np.searchsorted(segment, np.arange(banks(self.dense.shape[1]) * n_rows + 1)).astype("<u2")
            idx = (cols % BANK_COLUMNS).astype(np.uint8)
            return ptr.tobytes(), idx.tobytes(), self.dense[rows, cols].astype(np.int8).tobytes()
        ptr = np.searchsorted(rows, np.arange(self.dense.shape[0] + 1)).astype("<u2")
        idx = cols.astype(np.uint8 if fmt == "csr8" else "<u2")
        return ptr.tobytes(), idx.tobytes(), self.dense[rows, cols].astype(np.int8).tobytes()


def egru_columns(hidden: int, units: tuple[int, int]) -> np.ndarray:
    """Columns of the [*, 3H] kernels a PE owning ``units`` holds, gate-major (z | r | g)."""
    u0, u1 = units
    return np.concatenate([np.arange(g * hidden + u0, g * hidden + u1) for g in range(3)])


def weight_slices(layer, units: tuple[int, int]) -> tuple[WeightSlice, WeightSlice | None]:
    if isinstance(layer, EGRU):
        cols = egru_columns(layer.hidden, units)
        return WeightSlice(layer.kernel[:, cols]), WeightSlice(layer.recurrent_kernel[:, cols])
    u0, u1 = units
    return WeightSlice(layer.weight[u0:u1].T), None


def _int32(values: np.ndarray, what: str) -> bytes:
    values = np.asarray(values, np.int64)
    if values.size and (values.min() < -(1 << 31) or values.max() >= 1 << 31):
        raise ImageError(f"{what}: values do not fit the PE's int32 words")
    return values.astype("<i4").tobytes()


def pack(layer, profile: Profile, pe: "PE") -> tuple[bytes, dict]:
    """The memory image of one PE and its JSON map (section -> [offset, bytes])."""
    egru = isinstance(layer, EGRU)
    u0, u1 = pe.units
    n = u1 - u0
    f = profile.state_frac
    x_slice, h_slice = weight_slices(layer, pe.units)
    q = layer.quant
    payload = {"sources": b"".join(SOURCE_ENTRY.pack(key, matrix) for key, matrix in pe.sources)}
    payload["x_ptr"], payload["x_idx"], payload["x_val"] = x_slice.sections(pe.x_format)
    header = {"magic": MAGIC, "version": VERSION, "kind": KIND_EGRU if egru else KIND_LINEAR,
              "n_units": n, "n_sources": len(pe.sources), "key_base": pe.key_base, "first_tick": pe.depth,
              "x_rows": x_slice.dense.shape[0], "x_format": FORMATS[pe.x_format],
              "acc_bits": profile.acc_bits, "state_bits": profile.state_bits, "event_bits": profile.event_bits}
    if egru:
        lut = lookup_table(profile)
        cols = egru_columns(layer.hidden, pe.units)
        payload["h_ptr"], payload["h_idx"], payload["h_val"] = h_slice.sections(pe.h_format)
        payload["bias"] = _int32(layer.bias[cols], "EGRU.bias")
        payload["rbias"] = _int32(layer.recurrent_bias[cols], "EGRU.recurrent_bias")
        payload["thr"] = _int32(layer.thr[u0:u1], "EGRU.thr")
        tables = {fn: lut.table(fn, f) for fn in ("sigmoid", "tanh")}
        for fn, table in tables.items():
            if table.min() < -(1 << 15) or table.max() >= 1 << 15:
                raise ImageError(f"profile {profile.name!r}: {fn} table does not fit int16 entries")
            payload[f"lut_{fn}"] = table.astype("<i2").tobytes()
        sig_offset, sig_shift = lut_parameters(lut, "sigmoid", f)
        tanh_offset, tanh_shift = lut_parameters(lut, "tanh", f)
        header.update(h_rows=h_slice.dense.shape[0], h_format=FORMATS[pe.h_format],
                      use_trace=int(layer.use_trace), lut_entries=len(tables["sigmoid"]),
                      shift_x=q.input.frac + q.kernel.frac - f,
                      shift_h=profile.event_frac + q.recurrent_kernel.frac - f,
                      state_frac=f, event_shift=f - profile.event_frac, trace_gain=profile.trace_gain,
                      zoneout_gain=profile.zoneout_gain(layer.zoneout),
                      sigmoid_offset=sig_offset, sigmoid_shift=sig_shift,
                      tanh_offset=tanh_offset, tanh_shift=tanh_shift)
    else:
        if q.output.bits > 32:
            raise ImageError(f"Linear output format of {q.output.bits} bits does not fit a 32-bit packet payload")
        payload["bias"] = _int32(layer.bias[u0:u1], "Linear.bias")
        header.update(relu=int(layer.relu), shift_x=q.input.frac + q.weight.frac - q.output.frac,
                      out_bits=q.output.bits)

    sizes = section_sizes(pe.kind, n, header["x_rows"], header.get("h_rows", 0), pe.x_format,
                          x_slice.nnz, pe.h_format, h_slice.nnz if h_slice else 0, header.get("lut_entries", 0))
    offsets, cursor = {}, aligned(HEADER.size)
    for name in SECTIONS:
        offsets[name] = cursor
        got = len(payload.get(name, b""))
        if name not in STATE_SECTIONS and got != sizes[name]:
            raise AssertionError(f"section {name}: size model says {sizes[name]} bytes, packed {got}")
        cursor += aligned(sizes[name])
    header.update({f"off_{name}": offsets[name] for name in SECTIONS},
                  state_begin=offsets[STATE_SECTIONS[0]], state_end=cursor, image_bytes=cursor)
    if cursor != image_bytes(sizes):
        raise AssertionError(f"image size {cursor} differs from the size model {image_bytes(sizes)}")
    image = bytearray(cursor)
    image[:HEADER.size] = HEADER.pack(*(header.get(name, 0) for name, _ in HEADER_FIELDS))
    for name, blob in payload.items():
        image[offsets[name]:offsets[name] + len(blob)] = blob
    section_map = {name: [offsets[name], sizes[name]] for name in SECTIONS if sizes[name]}
    section_map["header"] = [0, HEADER.size]
    return bytes(image), section_map


def check_image(blob: bytes, expected: bytes, section_map: dict, where: str) -> None:
    """A bundle's image must be byte for byte what ``pack`` makes of its graph and placement.

    Equality covers every header field (magic, version, offsets, sizes, counts), every section
    (CSR pointers and indices included) and the padding; the error names the first header field or
    section that differs.  (The PE program's ``pe_init`` checks the header itself, without a graph.)
    """
    if blob == expected:
        return
    if len(blob) >= HEADER.size:
        for (name, _), got, want in zip(HEADER_FIELDS, HEADER.unpack_from(blob), HEADER.unpack_from(expected)):
            if got != want:
                raise ImageError(f"{where}: header field {name} is {got}, expected {want}")
    if len(blob) != len(expected):
        raise ImageError(f"{where}: image of {len(blob):,} bytes, expected {len(expected):,}")
    at = int(np.flatnonzero(np.frombuffer(blob, np.uint8) != np.frombuffer(expected, np.uint8))[0])
    section = next((name for name, (offset, size) in section_map.items() if offset <= at < offset + size), "padding")
    raise ImageError(f"{where}: section {section} differs at byte {at} from what graph.json compiles to")


def c_header() -> str:
    """The C declaration of the image layout (generated; the PE program includes it)."""
    lines = ["/* Generated by egru_deploy.targets.spinnaker2.images: do not edit. */",
             "#ifndef PE_IMAGE_LAYOUT_H", "#define PE_IMAGE_LAYOUT_H", "#include <stdint.h>", "",
             f"#define PE_MAGIC 0x{MAGIC:08x}u", f"#define PE_VERSION {VERSION}u",
             f"#define PE_KIND_EGRU {KIND_EGRU}u", f"#define PE_KIND_LINEAR {KIND_LINEAR}u",
             *(f"#define PE_FORMAT_{name.upper()} {code}u" for name, code in FORMATS.items()),
             f"#define PE_MATRIX_X {MATRIX_X}u", f"#define PE_MATRIX_H {MATRIX_H}u",
             f"#define PE_BANK_COLUMNS {BANK_COLUMNS}u",
             f"#define PE_UNIT_BITS {UNIT_BITS}u", f"#define PE_CHANNEL_BIT 0x{CHANNEL_BIT:x}u",
             *(f"#define PE_COUNTER_{name.upper()} {i}u" for i, name in enumerate(COUNTERS)),
             f"#define PE_N_COUNTERS {len(COUNTERS)}u", "",
             "typedef struct {"]
    lines += [f"    {_C_TYPES[code]} {name};" for name, code in HEADER_FIELDS]
    lines += ["} pe_header;", f"_Static_assert(sizeof(pe_header) == {HEADER.size}, \"pe_header layout\");", "",
              "typedef struct { uint32_t population; uint32_t matrix; } pe_source;",
              f"_Static_assert(sizeof(pe_source) == {SOURCE_ENTRY.size}, \"pe_source layout\");", "", "#endif", ""]
    return "\n".join(lines)
