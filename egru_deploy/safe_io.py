"""Reading untrusted files: NumPy ``.npy``/``.npz``, JSON and HDF5.

Every reader checks what a file declares (shapes, sizes, types, links) against what it really
holds and against :data:`MAX_BYTES` *before* allocating anything, never unpickles, never follows a
link out of the file, and reports a bad file by raising the caller's error class (a ``UserError``)
with one line naming the file, the member or HDF5 path, and what was expected. No NumPy, zipfile
or h5py exception, and no ``MemoryError``, reaches the caller.
"""
from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from egru_deploy.errors import UserError

MAX_BYTES = 2 << 30  # decoded array data one file may declare in all (weights, inputs, data sets)
MAX_JSON_BYTES = 64 << 20  # graph.json / bundle.json hold descriptions only; the arrays live in .npz
MAX_MEMBERS = 10_000  # .npz members, HDF5 objects
MAX_TEXT_ELEMENTS = 1 << 16  # strings of one HDF5 dataset (NIR edge lists, metadata)
MAX_HDF5_DEPTH = 8  # NIR: /node/nodes/<name>/metadata/<key> is depth 5
NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)  # the superblock follows an optional user block
KINDS = {"npy": "a NumPy .npy array", "zip": "a zip archive (.npz or PyTorch checkpoint)",
         "hdf5": "an HDF5 file (NIR)", "pickle": "a Python pickle (legacy PyTorch checkpoint)"}


def sniff(path: str | os.PathLike) -> str | None:
    """What a file is by its first bytes: ``npy``, ``zip``, ``hdf5``, ``pickle`` or None (also if unreadable)."""
    try:
        return _sniff(path)
    except OSError:
        return None  # the reader that opens the file next reports why


def _sniff(path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(NPY_MAGIC):
            return "npy"
        if head[:4] in ZIP_MAGICS:
            return "zip"
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # PROTO opcode
            return "pickle"
        for offset in HDF5_OFFSETS:
            f.seek(offset)
            if f.read(8) == HDF5_MAGIC:
                return "hdf5"
    return None


def regular_file(path: str | os.PathLike, error: type[UserError]) -> Path:
    """``path`` as a Path if it is a regular file (not a directory, device or FIFO)."""
    path = Path(path)
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as e:  # a name too long for the file system, a loop of links
        raise error(f"{first_line(str(path), 80)}: cannot be opened ({e.strerror or e})") from None
    if not exists:
        raise error(f"{path}: no such file")
    if not is_file:
        raise error(f"{path}: not a regular file")
    return path


def first_line(e: BaseException | str, limit: int = 160) -> str:
    """The first line of a (library's) message, shortened: error lines quote it, and stay one line."""
    lines = str(e).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[:limit] + "..."


class SizeBudget:
    """The bytes the arrays of one file declare, refused beyond :data:`MAX_BYTES` in all.

    Sizes are Python ints, so shapes whose product overflows int64 are caught too.
    """

    def __init__(self, error: type[UserError]):
        self.error, self.left = error, MAX_BYTES

    def take(self, where: str, shape, itemsize: int) -> int:
        shape = [int(d) for d in shape]
        if any(d < 0 for d in shape):
            raise self.error(f"{where}: negative dimension in declared shape {shape}")
        nbytes = math.prod(shape) * itemsize
        if nbytes > self.left:
            taken = MAX_BYTES - self.left
            others = f" (with the {taken:,} bytes of the arrays before it)" if taken else ""
            raise self.error(f"{where}: declares shape {shape} ({nbytes:,} bytes){others}, beyond the {MAX_BYTES:,} "
                             f"bytes of array data egru-deploy reads from one file")
        self.left -= nbytes
        return nbytes


# --------------------------------------------------------------------------- .npy / .npz

def load_npy(path: str | os.PathLike, error: type[UserError]) -> np.ndarray:
    """The numeric array of an ``.npy`` file."""
    path = regular_file(path, error)
    kind = sniff(path)
    if kind == "zip":
        raise error(f"{path}: is an .npz archive (several arrays); expected a single .npy array (numpy.save)")
    if kind != "npy":
        raise error(f"{path}: not an .npy array (no NumPy header{'; it is ' + KINDS[kind] if kind else ''})")
    try:
        with open(path, "rb") as f:
            return _read_array(f, str(path), path.stat().st_size, SizeBudget(error), error)
    except OSError as e:
        raise error(f"{path}: cannot read the file ({e.strerror or e})") from None


def load_npz(path: str | os.PathLike, error: type[UserError]) -> dict[str, np.ndarray]:
    """The numeric arrays of an ``.npz`` archive by key (member name without ``.npy``)."""
    path = regular_file(path, error)
    budget = SizeBudget(error)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise error(f"{path}: {len(members)} members, more than the {MAX_MEMBERS} an .npz may hold here")
            for info in members:
                where = f"{path}: member {info.filename!r}"
                key = info.filename[:-4] if info.filename.endswith(".npy") else None
                if key is None or info.is_dir():
                    raise error(f"{where}: not an .npy array (an .npz holds only NAME.npy members)")
                if key in arrays:
                    raise error(f"{where}: appears twice in the archive")
                with archive.open(info) as member:
                    arrays[key] = _read_array(member, where, info.file_size, budget, error)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile/zlib/bz2/lzma report damaged archives in many ways
        raise error(f"{path}: not a readable .npz archive ({type(e).__name__}: {first_line(e)})") from None
    return arrays


def load_npz_or_npy(path: str | os.PathLike, error: type[UserError]) -> dict[str, np.ndarray] | np.ndarray:
    """The arrays of an ``.npz`` (by key) or the array of an ``.npy``, told apart by content."""
    path = regular_file(path, error)
    kind = sniff(path)
    if kind == "zip":
        return load_npz(path, error)
    if kind == "npy":
        return load_npy(path, error)
    raise error(f"{path}: not an .npz or .npy file{' (it is ' + KINDS[kind] + ')' if kind else ''}")


def _read_array(stream, where: str, size: int, budget: SizeBudget, error: type[UserError]) -> np.ndarray:
    """One array from ``stream`` (``size`` bytes: an .npy file or .npz member), header checked first."""
    try:
        version = npy_format.read_magic(stream)
        # 3.0 only adds UTF-8 field names, i.e. structured (non-numeric) data
        read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is not None:
            with warnings.catch_warnings():  # literal parsing warns about odd escapes: one line per error
                warnings.simplefilter("ignore")
                shape, fortran_order, dtype = read_header(stream)
    except Exception as e:  # noqa: BLE001 - the header is parsed as Python literals: SyntaxError, TokenError ...
        raise error(f"{where}: not a valid .npy header ({type(e).__name__}: {first_line(e)})") from None
    if read_header is None:
        raise error(f"{where}: .npy format version {version[0]}.{version[1]} not supported (expected 1.0 or 2.0)")
    if dtype.kind not in NUMERIC_KINDS or dtype.hasobject or dtype.subdtype is not None:
        raise error(f"{where}: dtype {dtype} is not numeric (expected bool, integer or float data)")
    nbytes = budget.take(where, shape, dtype.itemsize)
    held = size - stream.tell()
    if nbytes != held:  # before allocating: a short file would otherwise be a zero-filled buffer
        raise error(f"{where}: header declares shape {list(shape)} of {dtype} ({nbytes:,} bytes) but "
                    f"{held:,} bytes of data follow it")
    buffer = bytearray(nbytes)
    view, got = memoryview(buffer), 0
    while got < nbytes:
        n = stream.readinto(view[got:])
        if not n:
            raise error(f"{where}: truncated ({got:,} of {nbytes:,} data bytes)")
        got += n
    array = np.frombuffer(buffer, dtype).reshape(shape, order="F" if fortran_order else "C")
    return array.astype(dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------- JSON

def loads_json(text: str, where: str, error: type[UserError]) -> object:
    """Parse JSON text, raising ``error`` naming ``where`` (also for nesting too deep to parse)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{where} is not valid JSON (nested too deeply)") from None
    except (ValueError, TypeError) as e:  # JSONDecodeError, too many digits for an int, not text at all
        raise error(f"{where} is not valid JSON ({first_line(e)})") from None


def read_json(path: str | os.PathLike, error: type[UserError]) -> object:
    """Parse a JSON file, raising ``error`` with one line naming the file when it is not JSON."""
    path = regular_file(path, error)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise error(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_JSON_BYTES:,} a JSON description "
                    f"may take")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path} is not valid JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
    except OSError as e:
        raise error(f"{path}: cannot read the file ({e.strerror or e})") from None
    return loads_json(text, str(path), error)


# --------------------------------------------------------------------------- HDF5

def read_hdf5_group(path: str | os.PathLike, name: str, error: type[UserError], text_allowed,
                    what: str = "HDF5 file") -> dict:
    """The group ``/name`` of an HDF5 file as nested dicts of arrays, scalars and str.

    Nothing is followed or read before it is checked: soft and external links, external storage,
    virtual datasets, committed types, unknown filters, unwritten data, non-numeric types and
    nesting deeper than :data:`MAX_HDF5_DEPTH` are refused. ``text_allowed(hdf5_path)`` says which
    datasets may hold strings; all others must hold numbers. ``what`` names the format in errors.
    """
    import h5py

    path = regular_file(path, error)
    walker = _Hdf5Walker(str(path), error, text_allowed)
    try:
        with h5py.File(path, "r") as f:
            tree = walker.member(f, name, f"/{name}", depth=1)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py reports damaged files as OSError, KeyError, RuntimeError ...
        raise error(f"{path}: not a readable {what} ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(tree, dict):
        raise error(f"{path}: HDF5 /{name}: expected a group, got a dataset")
    return tree


class _Hdf5Walker:
    def __init__(self, path: str, error: type[UserError], text_allowed):
        self.path, self.error, self.text_allowed = path, error, text_allowed
        self.budget = SizeBudget(error)
        self.objects = 0

    def fail(self, where: str, message: str) -> UserError:
        return self.error(f"{self.path}: HDF5 {where}: {message}")

    def member(self, parent, name: str, where: str, depth: int):
        import h5py

        link = parent.get(name, getlink=True)  # the link itself: nothing is resolved yet
        if link is None:
            raise self.fail(where, "missing")
        if isinstance(link, h5py.ExternalLink):
            raise self.fail(where, f"external link to {link.path} in file {link.filename!r}; "
                                   f"links to other files are refused")
        if isinstance(link, h5py.SoftLink):
            raise self.fail(where, f"soft link to {link.path}; links are not followed (expected a group or dataset)")
        if not isinstance(link, h5py.HardLink):
            raise self.fail(where, f"unsupported link type {type(link).__name__}")
        self.objects += 1
        if self.objects > MAX_MEMBERS:
            raise self.fail(where, f"more than {MAX_MEMBERS} objects in the file")
        obj = parent[name]
        if isinstance(obj, h5py.Group):
            if depth >= MAX_HDF5_DEPTH:
                raise self.fail(where, f"groups nested deeper than {MAX_HDF5_DEPTH} levels")
            return {key: self.member(obj, key, f"{where}/{key}", depth + 1) for key in obj.keys()}
        if isinstance(obj, h5py.Dataset):
            return self.dataset(obj, where)
        raise self.fail(where, f"a {type(obj).__name__}; expected a group or dataset")

    def dataset(self, dset, where: str):
        import h5py
        from h5py import h5d, h5z

        plist = dset.id.get_create_plist()
        layout = plist.get_layout()
        if layout == h5d.VIRTUAL:
            raise self.fail(where, "virtual dataset (maps data from other files); refused")
        if plist.get_external_count():
            raise self.fail(where, f"stored in external file {plist.get_external(0)[0].decode(errors='replace')!r}; "
                                   f"refused (expected data inside the file)")
        for code, _, _, filter_name in (plist.get_filter(i) for i in range(plist.get_nfilters())):
            # Only filters built into h5py: others would make HDF5 search for and load a plugin library.
            if code not in (h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32, h5z.FILTER_LZF):
                raise self.fail(where, f"compressed with filter {code} ({filter_name.decode(errors='replace')}), "
                                       f"not supported (expected gzip, lzf or shuffle)")
        text = h5py.check_string_dtype(dset.dtype) is not None
        if text and not self.text_allowed(where):
            raise self.fail(where, "holds text; expected numbers")
        if not text and (dset.dtype.kind not in NUMERIC_KINDS or dset.dtype.subdtype is not None):
            raise self.fail(where, f"dtype {dset.dtype} not supported (expected numbers)")
        if dset.shape is None:
            raise self.fail(where, "empty dataspace; expected a value")
        count = math.prod(dset.shape)
        if text and count > MAX_TEXT_ELEMENTS:
            raise self.fail(where, f"{count:,} strings, more than {MAX_TEXT_ELEMENTS:,}")
        self.budget.take(f"{self.path}: HDF5 {where}", dset.shape, dset.dtype.itemsize)
        if layout == h5d.CHUNKED:
            if math.prod(dset.chunks) * dset.dtype.itemsize > MAX_BYTES:  # HDF5 reads whole chunks
                raise self.fail(where, f"chunk shape {list(dset.chunks)} beyond {MAX_BYTES:,} bytes")
            chunks = math.prod(-(-n // c) for n, c in zip(dset.shape, dset.chunks))
            written = dset.id.get_num_chunks()
        else:
            chunks, written = 1, int(layout == h5d.COMPACT or dset.id.get_storage_size() > 0)
        if count and written < chunks:  # unwritten data would read as fill values
            raise self.fail(where, f"declared {list(dset.shape)} but its data was never written")
        if layout == h5d.CONTIGUOUS and not text and dset.id.get_storage_size() < dset.nbytes:
            raise self.fail(where, f"declared {dset.nbytes:,} bytes but stores {dset.id.get_storage_size():,}")
        try:
            return dset.asstr()[()] if text else dset[()]
        except UnicodeDecodeError:
            raise self.fail(where, "text is not UTF-8") from None
        except OSError as e:
            raise self.fail(where, f"cannot read its data ({first_line(e)})") from None
