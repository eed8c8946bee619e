"""The one reader of a spinnaker2 bundle: hwsim, the QEMU runner and the board path all ``load`` through it.

Nothing a bundle holds is used before it is checked; every failure is one line naming the file and
the field (``BundleError``):

* paths: every file read (``placement.json``, ``images.json`` and each image ``file`` it names) must
  resolve, symlinks followed, inside the bundle directory (``member``);
* ``placement.json``: the PEs' unit slices and the PE memory are read with type and range checks,
  then the placement is re-derived from the graph with exactly those slices (``mapping.map_graph``,
  which also refuses slices that do not fit a PE or a board) and every other field must equal it:
  board, key layout, layers, PEs, sources, routing tables;
* ``images.json`` and the images: each entry and each image must be what compile writes for that
  placement (``compile.pe_images``, ``images.check_image``: magic, version, every offset and size,
  counts, CSR pointers and indices).

Re-deriving instead of checking field by field keeps one definition of a valid bundle: what this
egru-deploy compiles.  (The C program's ``pe_init`` checks its image header on its own, for the
board, where this reader does not run.)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from egru_deploy import bundle, ir
from egru_deploy.bundle import BundleError
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.targets.spinnaker2 import images
from egru_deploy.targets.spinnaker2 import memory_map
from egru_deploy.targets.spinnaker2.build import PEMemory
from egru_deploy.targets.spinnaker2.compile import IMAGES_JSON, PLACEMENT_JSON, TARGET_DIR, pe_images
from egru_deploy.targets.spinnaker2.mapping import BOARD, MappingError, chip_layers, map_graph

TARGET = "spinnaker2"
_MISSING = object()


@dataclass(frozen=True)
class Spinnaker2Bundle:
    directory: Path
    system: hwsim.System
    images: tuple[bytes, ...]  # per PE index, checked
    image_map: dict  # images.json as read (``file`` as written, inside the bundle)


def member(directory, name, where: str, base: str = ".") -> Path:
    """``name``, a path read from a bundle (relative to its folder ``base``), resolved with symlinks
    followed; it must lie inside the bundle ``directory`` and be a regular file."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"{where}: expected a relative file name, got {_show(name)}")
    root = Path(directory).resolve()
    try:
        path = Path(root, base, name).resolve()  # an absolute name replaces the rest, and lands outside
        ok = path.is_relative_to(root)
        is_file = ok and path.is_file()
    except (OSError, RuntimeError, ValueError) as e:  # symlink loop, NUL byte, unreadable directory
        raise BundleError(f"{where}: {name!r} cannot be resolved ({e})") from None
    if not ok:
        raise BundleError(f"{where}: {name!r} resolves outside the bundle {directory}")
    if not is_file:
        raise BundleError(f"{where}: {name!r} is not a file in the bundle")
    return path


def load(bundle_dir) -> Spinnaker2Bundle:
    """Read and check a spinnaker2 bundle whole (see the module docstring)."""
    directory = Path(bundle_dir)
    bundle.read_manifest(directory, expect_target=TARGET)
    graph = bundle.load_graph(directory)
    where = str(directory / TARGET_DIR / PLACEMENT_JSON)
    placement = _read_json(directory, PLACEMENT_JSON, where)
    if not isinstance(placement, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(placement).__name__}")
    try:
        mapping = map_graph(graph, _memory(placement, where), BOARD, slices=_slices(placement, graph, where))
    except MappingError as e:
        raise MappingError(f"{where}: {e}") from None
    _same(placement, json.loads(json.dumps(mapping.to_json())), where)
    system = hwsim.System(graph, placement)

    where = str(directory / TARGET_DIR / IMAGES_JSON)
    image_map = _read_json(directory, IMAGES_JSON, where)
    if not isinstance(image_map, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(image_map).__name__}")
    blobs, expected = pe_images(graph, mapping)
    paths = {}
    for key, entry in expected.items():  # containment first: nothing outside the bundle is opened
        read = image_map.get(key)
        name = read.get("file") if isinstance(read, dict) else None
        if name is not None:
            paths[key] = member(directory, name, f"{where}: {key}.file", base=TARGET_DIR)
            entry["file"] = name  # any name inside the bundle will do; its content is checked below
    _same(image_map, expected, where)
    checked = []
    for (key, entry), blob in zip(expected.items(), blobs):
        shown = str(directory / TARGET_DIR / entry["file"])
        image = _read_image(paths[key], shown, key, len(blob))
        images.check_image(image, blob, entry["sections"], shown)
        checked.append(image)
    return Spinnaker2Bundle(directory, system, tuple(checked), image_map)


# --------------------------------------------------------------------------- the parts re-derived from


def _slices(placement: dict, graph: ir.Graph, where: str) -> list[list[tuple[int, int]]]:
    """Per chip layer, the unit slices of its PEs: contiguous, in layer order, covering every unit."""
    pes = placement.get("pes", _MISSING)
    if not isinstance(pes, list):
        raise BundleError(f"{where}: pes is {_show(pes)}, expected a list of PEs")
    on_chip = chip_layers(graph)
    depth_of = {index: depth for depth, (index, _) in enumerate(on_chip)}
    slices: list[list[tuple[int, int]]] = [[] for _ in on_chip]
    depth = 0
    for j, pe in enumerate(pes):
        layer = pe.get("layer", _MISSING) if isinstance(pe, dict) else _MISSING
        if not _is_int(layer) or layer not in depth_of or depth_of[layer] < depth:
            raise BundleError(f"{where}: pes[{j}].layer is {_show(layer)}, expected one of the graph's "
                              f"PE layers {list(depth_of)}, in order")
        depth = depth_of[layer]
        start = slices[depth][-1][1] if slices[depth] else 0
        units, size = pe.get("units", _MISSING), on_chip[depth][1].out_size
        if not (isinstance(units, list) and len(units) == 2 and all(map(_is_int, units))
                and units[0] == start and start < units[1] <= size):
            raise BundleError(f"{where}: pes[{j}].units is {_show(units)}, expected [{start}, u1] "
                              f"with {start} < u1 <= {size} (layer {layer}'s next units)")
        slices[depth].append((start, units[1]))
    for (index, layer), layer_slices in zip(on_chip, slices):
        covered = layer_slices[-1][1] if layer_slices else 0
        if covered != layer.out_size:
            raise BundleError(f"{where}: pes: the PEs of layer {index} hold units 0..{covered - 1} "
                              f"of its {layer.out_size}")
    return slices


def _memory(placement: dict, where: str) -> PEMemory:
    """The PE memory the bundle was compiled against: integers inside the PE's flat 128 KB memory, the image
    where this egru-deploy's memory map puts it (``memory_map.py``)."""
    doc = placement.get("memory", _MISSING)
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: memory is {_show(doc)}, expected an object")
    values = {}
    for f in fields(PEMemory):
        value = doc.get(f.name, _MISSING)
        if f.name == "measured" and isinstance(value, bool):
            values[f.name] = value
        elif f.name != "measured" and _is_int(value) and value >= 0:
            values[f.name] = value
        else:
            kind = "true or false" if f.name == "measured" else "a non-negative integer"
            raise BundleError(f"{where}: memory.{f.name} is {_show(value)}, expected {kind}")
    limits = {"code_bytes": memory_map.CODE_WINDOW_END, "runtime_bytes": memory_map.PE_MEMORY_BYTES,
              "image_address": memory_map.STACK_ADDRESS, "image_capacity": memory_map.IMAGE_CAPACITY}
    for name, limit in limits.items():
        if values[name] > limit:
            raise BundleError(f"{where}: memory.{name} is {values[name]:,}, but a PE's memory allows at most "
                              f"{limit:,}")
    if values["image_address"] != memory_map.IMAGE_ADDRESS:
        raise BundleError(f"{where}: memory.image_address is {values['image_address']:,}, but the PE memory map puts "
                          f"the image at {memory_map.IMAGE_ADDRESS:,} (0x{memory_map.IMAGE_ADDRESS:05x}): recompile "
                          f"the bundle")
    return PEMemory(**values)


# --------------------------------------------------------------------------- helpers


def _read_json(directory: Path, name: str, where: str):
    return ir.read_json(member(directory, name, where, base=TARGET_DIR), BundleError)


def _read_image(path: Path, where: str, key: str, size: int) -> bytes:
    try:
        held = os.stat(path).st_size
        if held != size:  # checked before reading: a huge file is never read
            raise BundleError(f"{where}: {held:,} bytes, but images.json {key}.bytes is {size:,}")
        return path.read_bytes()
    except OSError as e:
        raise BundleError(f"{where}: cannot be read ({e.strerror or e})") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value, limit: int = 60) -> str:
    text = "missing" if value is _MISSING else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _same(got, want, where: str, path: str = "") -> None:
    """``got`` (read) must equal ``want`` (re-derived), JSON types included (1 is not 1.0 or true)."""
    at = path or "the document"
    if isinstance(want, dict) and isinstance(got, dict):
        for key, value in want.items():
            if key not in got:
                raise BundleError(f"{where}: {path + '.' if path else ''}{key} missing (expected {_show(value)})")
            _same(got[key], value, where, f"{path}.{key}" if path else key)
        for key in got.keys() - want.keys():
            raise BundleError(f"{where}: {at} has an unexpected key {key!r}")
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            raise BundleError(f"{where}: {at} has {len(got):,} entries, expected {len(want):,}")
        for k, (a, b) in enumerate(zip(got, want)):
            _same(a, b, where, f"{path}[{k}]")
    elif type(got) is not type(want) or got != want:
        raise BundleError(f"{where}: {at} is {_show(got)}, expected {_show(want)}")
