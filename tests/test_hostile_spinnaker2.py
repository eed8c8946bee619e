"""Hostile and careless SpiNNaker2 bundles (issue 10): every reader refuses them in one line.

One real bundle is compiled per module (the digits example); each case copies it, corrupts a copy
(paths and symlinks out of the bundle, placement.json / images.json / PE image bytes, sizes beyond
the PE or the board, empty inputs) and runs the real commands (``emulate --backend hwsim|qemu``,
``run``) under ``hostile.assert_hostile_case``.  Hypothesis mutates JSON leaves and image header
words.  The C program's own header check (``pe_init``) is exercised by linking corrupt images and
running them under QEMU directly, past the Python loader.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hostile import assert_hostile_case, assert_no_secret, assert_one_line_error, plant_secret, run
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from egru_deploy import bundle, ir
from egru_deploy.ir import EGRU, EGRUQuant, Graph, Input, Linear, LinearQuant, QType
from egru_deploy.profiles import SPINNAKER2
from egru_deploy.targets.spinnaker2 import build, images, qemu
from egru_deploy.targets.spinnaker2.compile import IMAGES_JSON, PLACEMENT_JSON, TARGET_DIR, compile_spinnaker2
from egru_deploy.targets.spinnaker2.mapping import BOARD, map_graph

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HAVE_QEMU = build.toolchain_available() and qemu.qemu_available()
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="arm-none-eabi-gcc / qemu-system-arm not installed "
                                                      "(scripts/setup_arm.sh)")
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = [name for name, _ in images.HEADER_FIELDS]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The digits example compiled for SpiNNaker2 (2 PEs), beside two test samples ``x.npy``."""
    out = tmp_path_factory.mktemp("s2-hostile") / "digits-s2"
    result = run(["compile", EXAMPLES / "digits_egru.pt", "--target", "spinnaker2", "--calibration",
                  EXAMPLES / "digits_train.npz", "--output-mode", "last", "-o", out])
    assert result.exit_code == 0, result.output
    np.save(out.parent / "x.npy", np.load(EXAMPLES / "digits_test.npz")["x"][:2].astype(np.float32))
    return out


class Case:
    """A private copy of the bundle under ``root`` (with the inputs), to corrupt and run."""

    def __init__(self, compiled: Path, parent: Path):
        self.root = Path(tempfile.mkdtemp(dir=parent))
        self.bundle = self.root / "bundle"
        shutil.copytree(compiled, self.bundle, symlinks=True, ignore=shutil.ignore_patterns("stages", "report.*"))
        self.x = self.root / "x.npy"
        shutil.copy(compiled.parent / "x.npy", self.x)
        self.s2 = self.bundle / TARGET_DIR

    def json(self, name: str):
        return json.loads((self.s2 / name).read_text())

    def write_json(self, name: str, doc) -> None:
        (self.s2 / name).write_text(json.dumps(doc))

    def image(self, pe: int = 0) -> Path:
        return self.s2 / self.json(IMAGES_JSON)[str(pe)]["file"]

    def emulate(self, backend: str) -> list:
        return ["emulate", self.bundle, "--backend", backend, "--input", self.x, "--output", self.root / "y.npy"]

    def board(self) -> list:
        return ["run", self.bundle, "--target", "spinnaker2", "--board", "192.0.2.1", "--input", self.x,
                "--output", self.root / "y.npy"]

    def refused(self, *fragments: str, commands=None) -> None:
        """Every command that reads the bundle (hwsim, qemu, board) refuses it with one line."""
        for args in commands or (self.emulate("hwsim"), self.emulate("qemu"), self.board()):
            assert_hostile_case(args, self.root, *fragments)
        assert_no_secret(self.root)


@pytest.fixture
def case(compiled, tmp_path):
    return Case(compiled, tmp_path)


DELETE = object()  # a mutation that removes the key


def set_path(doc, path, value):
    """``doc`` with the leaf at ``path`` replaced (or deleted when ``value`` is DELETE)."""
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def leaves(doc, path=()):
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from leaves(value, (*path, key))
    elif isinstance(doc, list):
        for k, value in enumerate(doc):
            yield from leaves(value, (*path, k))
    else:
        yield path


def egru_layer(hidden: int, density: float) -> EGRU:
    """A quantized EGRU layer on 8 inputs with int8 weights, ``density`` of them non-zero."""
    rng = np.random.default_rng(hidden)
    f = SPINNAKER2.state_frac

    def weights(rows, cols):
        return (rng.integers(-127, 128, (rows, cols)) * (rng.random((rows, cols)) < density)).astype(np.int8)

    return EGRU(kernel=weights(8, 3 * hidden), recurrent_kernel=weights(hidden, 3 * hidden),
                bias=np.zeros(3 * hidden, np.int64), recurrent_bias=np.zeros(3 * hidden, np.int64),
                thr=np.full(hidden, 1 << (f - 2)), use_trace=False,
                quant=EGRUQuant(kernel=QType(8, 7), recurrent_kernel=QType(8, 8), bias=QType(32, f),
                                recurrent_bias=QType(32, f), thr=QType(32, f), input=QType(32, 8)))


def header_with(blob: bytes, **fields) -> bytes:
    values = dict(zip(FIELDS, images.HEADER.unpack_from(blob)))
    out = bytearray(blob)
    images.HEADER.pack_into(out, 0, *{**values, **fields}.values())
    return bytes(out)


# --------------------------------------------------------------------------- paths out of the bundle


def test_image_file_outside_the_bundle_is_refused(case):
    secret = plant_secret(case.root / "outside")
    for name in (str(secret), "../../outside/secret.bin", "images/../../../outside/secret.bin"):
        doc = case.json(IMAGES_JSON)
        doc["0"]["file"] = name
        case.write_json(IMAGES_JSON, doc)
        case.refused(IMAGES_JSON, "0.file", "resolves outside the bundle")


def test_symlinks_out_of_the_bundle_are_refused(case):
    """An image, placement.json, or the spinnaker2/ folder itself linked to files outside (even valid ones)."""
    secret = plant_secret(case.root / "outside")
    image = case.image(0)
    original = image.read_bytes()
    image.unlink()
    image.symlink_to(secret)
    case.refused(IMAGES_JSON, "0.file", "resolves outside the bundle")
    image.unlink()
    image.write_bytes(original)

    outside = case.root / "outside" / PLACEMENT_JSON
    shutil.copy(case.s2 / PLACEMENT_JSON, outside)  # a valid placement: only where it lies is wrong
    (case.s2 / PLACEMENT_JSON).unlink()
    (case.s2 / PLACEMENT_JSON).symlink_to(outside)
    case.refused(PLACEMENT_JSON, "resolves outside the bundle")
    (case.s2 / PLACEMENT_JSON).unlink()
    shutil.copy(outside, case.s2 / PLACEMENT_JSON)

    moved = case.root / "outside" / TARGET_DIR
    shutil.move(case.s2, moved)
    case.s2.symlink_to(moved, target_is_directory=True)
    case.refused(PLACEMENT_JSON, "resolves outside the bundle")


def test_symlink_inside_the_bundle_is_followed(case):
    image = case.image(0)
    image.rename(image.with_name("copy.bin"))
    image.symlink_to("copy.bin")
    result = run(case.emulate("hwsim"))
    assert result.exit_code == 0, result.output


def test_image_that_is_not_a_regular_file_is_refused(case):
    image = case.image(1)
    image.unlink()
    image.mkdir()
    case.refused(IMAGES_JSON, "1.file", "not a file in the bundle")
    image.rmdir()
    os.mkfifo(image)  # reading it would block forever (so would the snapshot: only the line is checked)
    assert_one_line_error(run(case.emulate("hwsim")), IMAGES_JSON, "1.file", "not a file in the bundle")


# --------------------------------------------------------------------------- malformed placement.json / images.json


PLACEMENT_CASES = [  # (mutation of the parsed document, fragments of the error)
    (lambda d: [], ("expected a JSON object",)),
    (lambda d: set_path(d, ["pes"], DELETE), ("pes is missing",)),
    (lambda d: set_path(d, ["pes", 0, "layer"], "0"), ("pes[0].layer",)),
    (lambda d: set_path(d, ["pes", 0, "units"], [0, -5]), ("pes[0].units",)),
    (lambda d: set_path(d, ["pes", 1, "units"], [0, 10 ** 30]), ("pes[1].units",)),
    (lambda d: set_path(d, ["pes", 1, "chip"], -1), ("pes[1].chip is -1, expected 0",)),
    (lambda d: set_path(d, ["pes", 1, "core"], True), ("pes[1].core is true, expected 1",)),
    (lambda d: set_path(d, ["pes", 0, "sources", 0, 1], 1.0), ("pes[0].sources[0][1] is 1.0, expected 0",)),
    (lambda d: {**d, "layers": d["layers"] * 2}, ("layers has 4 entries, expected 2",)),
    (lambda d: set_path(d, ["board", "chips"], 10 ** 6), ("board.chips",)),
    (lambda d: set_path(d, ["key_layout", "unit_bits"], 40), ("key_layout.unit_bits",)),
    (lambda d: set_path(d, ["routing", "0", 0, 3], [200]), ("routing.0[0][3]",)),
    (lambda d: set_path(d, ["memory", "image_address"], -1), ("memory.image_address",)),
    (lambda d: set_path(d, ["memory", "measured"], "yes"), ("memory.measured",)),
    (lambda d: set_path(d, ["memory", "image_capacity"], 10 ** 20), ("memory.image_capacity", "at most")),
    (lambda d: set_path(d, ["extra"], 1), ("unexpected key 'extra'",)),
]


@pytest.mark.parametrize("mutate, fragments", PLACEMENT_CASES)
def test_malformed_placement_is_refused_naming_the_key(case, mutate, fragments):
    case.write_json(PLACEMENT_JSON, mutate(case.json(PLACEMENT_JSON)))
    case.refused(PLACEMENT_JSON, *fragments)


IMAGES_CASES = [
    (lambda d: set_path(d, ["1"], DELETE), ("1 missing",)),
    (lambda d: set_path(d, ["2"], d["1"]), ("unexpected key '2'",)),
    (lambda d: set_path(d, ["0", "bytes"], "67256"), ("0.bytes",)),
    (lambda d: set_path(d, ["0", "file"], 5), ("0.file", "expected a relative file name")),
    (lambda d: set_path(d, ["0", "file"], "images/pe00001.bin"), ("0.bytes",)),  # another PE's image
    (lambda d: set_path(d, ["1", "load_address"], 0), ("1.load_address",)),
    (lambda d: set_path(d, ["0", "sections", "x_val", 0], 1), ("0.sections.x_val[0]",)),
]


@pytest.mark.parametrize("mutate, fragments", IMAGES_CASES)
def test_malformed_images_json_is_refused_naming_the_entry(case, mutate, fragments):
    case.write_json(IMAGES_JSON, mutate(case.json(IMAGES_JSON)))
    case.refused(IMAGES_JSON, *fragments)


@pytest.mark.parametrize("text", [b"{", b"", b"\xff", b'{"pes": [' * 100_000, b'{"pes": ' + b"9" * 5000 + b"}"])
def test_bundle_json_that_is_not_json_is_refused(case, text):
    (case.s2 / PLACEMENT_JSON).write_bytes(text)
    case.refused(PLACEMENT_JSON, commands=[case.emulate("hwsim")])


JSON_VALUES = st.one_of(st.integers(-(2 ** 66), 2 ** 66), st.booleans(), st.none(), st.text(max_size=4),
                        st.floats(), st.lists(st.integers(-3, 3), max_size=2), st.just(DELETE))


def _differs(new, old) -> bool:
    return new is DELETE or type(new) is not type(old) or new != old


@FUZZ
@given(data=st.data())
def test_fuzzed_bundle_json_is_refused(compiled, tmp_path_factory, data):
    """Any changed leaf of placement.json (but the PE memory, which is an input) or images.json is refused."""
    case = Case(compiled, tmp_path_factory.getbasetemp())
    name = data.draw(st.sampled_from([PLACEMENT_JSON, IMAGES_JSON]))
    doc = case.json(name)
    paths = [p for p in leaves(doc) if p[0] != "memory"]
    path = data.draw(st.sampled_from(paths))
    old = doc
    for key in path:
        old = old[key]
    value = data.draw(JSON_VALUES)
    assume(_differs(value, old))
    case.write_json(name, set_path(doc, list(path), value))
    assert_hostile_case(case.emulate("hwsim"), case.root, name)
    shutil.rmtree(case.root)


# --------------------------------------------------------------------------- PE images: the Python loader


def test_every_header_field_changed_is_refused_naming_it(case):
    """Flipping the lowest bit of any header field (offsets, sizes, counts, pads) is refused by the loader."""
    image = case.image(0)
    original = image.read_bytes()
    header = dict(zip(FIELDS, images.HEADER.unpack_from(original)))
    for name in FIELDS:
        image.write_bytes(header_with(original, **{name: header[name] ^ 1}))
        assert_hostile_case(case.emulate("hwsim"), case.root, str(image), f"header field {name} is")
    image.write_bytes(original)


def test_truncated_and_altered_images_are_refused(case):
    image = case.image(1)
    original = image.read_bytes()
    image.write_bytes(original[:-8])
    case.refused(str(image), f"{len(original) - 8:,} bytes", "images.json 1.bytes")
    at = dict(zip(FIELDS, images.HEADER.unpack_from(original)))["off_sources"] + 1  # inside the sources section
    image.write_bytes(original[:at] + bytes([original[at] ^ 0x10]) + original[at + 1:])
    case.refused(str(image), "section sources differs")


@FUZZ
@given(data=st.data())
def test_fuzzed_image_words_are_refused(compiled, tmp_path_factory, data):
    """Any header word (or, sometimes, any word of the image) set to another value is refused."""
    case = Case(compiled, tmp_path_factory.getbasetemp())
    pe = data.draw(st.sampled_from([0, 1]))
    image = case.image(pe)
    blob = bytearray(image.read_bytes())
    words = images.HEADER.size // 4 if data.draw(st.booleans()) else len(blob) // 4
    word = data.draw(st.integers(0, words - 1))
    value = data.draw(st.integers(0, 2 ** 32 - 1))
    assume(int.from_bytes(blob[4 * word:4 * word + 4], "little") != value)
    blob[4 * word:4 * word + 4] = value.to_bytes(4, "little")
    image.write_bytes(bytes(blob))
    line = assert_hostile_case(case.emulate("hwsim"), case.root, str(image))
    assert "header field" in line or "differs" in line, line
    shutil.rmtree(case.root)


# --------------------------------------------------------------------------- sizes: PE memory and board


def test_image_larger_than_the_pe_memory_is_refused_with_numbers(case):
    doc = case.json(PLACEMENT_JSON)
    doc["memory"]["image_capacity"] = 60_000
    case.write_json(PLACEMENT_JSON, doc)
    case.refused(PLACEMENT_JSON, "PE 0", "67,256 bytes", "60,000 bytes")


def test_population_larger_than_the_board_is_refused_with_numbers(tmp_path):
    """A readout spread one unit per PE (a hostile placement) needs more PEs than a board has."""
    units = BOARD.pes + 4
    egru = egru_layer(4, density=1.0)
    readout = Linear(weight=np.ones((units, 4), np.int8), bias=np.zeros(units, np.int64), relu=False,
                     quant=LinearQuant(weight=QType(8, 7), bias=QType(32, 10), input=QType(32, SPINNAKER2.state_frac),
                                       output=QType(32, 10)))
    graph = Graph(Input(8), (egru, readout), "sequence", profile="spinnaker2")
    path = tmp_path / "wide"
    with bundle.writing(path) as tmp:
        ir.save(graph, tmp)
        compile_spinnaker2(graph, tmp)
        bundle.write_manifest(tmp, "spinnaker2", graph.profile)
    placement = path / TARGET_DIR / PLACEMENT_JSON
    doc = json.loads(placement.read_text())
    doc["pes"] = doc["pes"][:1] + [{**doc["pes"][1], "units": [u, u + 1]} for u in range(units)]
    placement.write_text(json.dumps(doc))
    np.save(tmp_path / "x.npy", np.ones((1, 3, 8), np.float32))
    for backend in ("hwsim", "qemu"):
        assert_hostile_case(["emulate", path, "--backend", backend, "--input", tmp_path / "x.npy",
                             "--output", tmp_path / "y.npy"], tmp_path, PLACEMENT_JSON, "does not fit the board",
                            f"{units + 1:,} PEs", f"{BOARD.pes:,}")


# --------------------------------------------------------------------------- empty inputs


@pytest.mark.parametrize("shape, fragment", [((0, 8, 8), "0 samples"), ((2, 0, 8), "sequence length is 0")])
def test_empty_input_is_one_line(case, shape, fragment):
    np.save(case.x, np.zeros(shape, np.float32))
    case.refused(fragment, commands=[case.emulate("hwsim"), case.emulate("qemu")])


# --------------------------------------------------------------------------- the C program's own check (QEMU)


def _run_image(blob: bytes) -> str:
    """Link ``blob`` into the PE program and run it on QEMU, past the Python loader; its error, or ''."""
    empty = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
    try:
        qemu.run_elf(build.link(blob), qemu.encode_stream([[empty, empty, empty]]), timeout_s=20)
    except qemu.QemuError as e:
        return str(e)
    return ""


def _csr_image() -> bytes:
    """An EGRU PE image with both matrices in csr8 (a 90 % pruned layer of 32 units)."""
    layer = egru_layer(32, density=0.1)
    graph = Graph(Input(8), (layer,), "sequence", profile="spinnaker2")
    pe = map_graph(graph, build.measure()).pes[0]
    assert pe.x_format == pe.h_format == "csr8"
    return images.pack(layer, SPINNAKER2, pe)[0]


def _banked_graph() -> Graph:
    """One EGRU PE of 100 units (300 gate columns, 2 banks), 10 % dense: both matrices in csr8b."""
    return Graph(Input(8), (egru_layer(100, density=0.1),), "sequence", profile="spinnaker2")


def _banked_image() -> bytes:
    graph = _banked_graph()
    pe, = map_graph(graph, build.measure()).pes
    assert pe.x_format == pe.h_format == "csr8b"
    return images.pack(graph.layers[0], SPINNAKER2, pe)[0]


def _banked_corruptions(blob: bytes) -> dict[str, tuple[str, bytes]]:
    """csr8b images with a bank pointer or index corrupted: name -> (section, image)."""
    header = dict(zip(FIELDS, images.HEADER.unpack_from(blob)))
    rows, ptr_at, idx_at = header["x_rows"], header["off_x_ptr"], header["off_x_idx"]
    ptr = np.frombuffer(blob, "<u2", 2 * rows + 1, ptr_at)
    first = int(ptr[rows])  # the first entry of bank 1 (columns 256..299)
    assert first < ptr[2 * rows]

    def put(at: int, data: bytes) -> bytes:
        return blob[:at] + data + blob[at + len(data):]

    return {
        "index past the last bank's columns": ("x_idx", put(idx_at + first, bytes([255]))),  # column 511 of 300
        "bank pointer falling": ("x_ptr", put(ptr_at + 2 * rows, (0xFFFF).to_bytes(2, "little"))),
        "last pointer beyond the image": ("x_ptr", put(ptr_at + 4 * rows, (0xFFFF).to_bytes(2, "little"))),
    }


def test_banked_csr_pointers_and_indices_corrupted_are_refused_by_the_loader(tmp_path):
    path = tmp_path / "banked"
    with bundle.writing(path) as tmp:
        ir.save(_banked_graph(), tmp)
        compile_spinnaker2(_banked_graph(), tmp)
        bundle.write_manifest(tmp, "spinnaker2", "spinnaker2")
    image = path / TARGET_DIR / json.loads((path / TARGET_DIR / IMAGES_JSON).read_text())["0"]["file"]
    np.save(tmp_path / "x.npy", np.ones((1, 3, 8), np.float32))
    original = image.read_bytes()
    for section, corrupt in _banked_corruptions(original).values():
        image.write_bytes(corrupt)
        for backend in ("hwsim", "qemu") if HAVE_QEMU else ("hwsim",):
            assert_hostile_case(["emulate", path, "--backend", backend, "--input", tmp_path / "x.npy",
                                 "--output", tmp_path / "y.npy"], path, str(image), f"section {section} differs")
    image.write_bytes(original)


C_CASES = [  # header fields -> what pe_init reports
    ({"magic": 0}, "wrong magic"),
    ({"version": images.VERSION + 1}, "unsupported version"),
    ({"image_bytes": 1 << 20}, "image_bytes exceeds the image"),
    ({"kind": 7}, "kind"),
    ({"h_format": 9}, "h_format"),
    ({"x_format": len(images.FORMATS)}, "x_format"),  # the first code past csr8b
    ({"off_acc_x": 1 << 30}, "section offset"),
    ({"off_bias": 52388}, "section offset"),  # misaligned
    ({"x_rows": 1 << 31}, "section offset"),  # rows x cols beyond the image (and beyond 32-bit products)
    ({"lut_entries": 0}, "lut_entries"),
    ({"state_begin": 0}, "state_begin"),  # pe_reset would zero the weights
    ({"shift_h": -100}, "bit width or shift"),
    ({"zoneout_gain": (1 << 12) + 1}, "zoneout_gain"),  # above 1.0 in Q.12: not a blend
]


@pytest.fixture(scope="module")
def pe_blobs(compiled, tmp_path_factory):
    """The digits PE 0 image and a CSR image; corrupt ELFs are linked in a private build folder."""
    with pytest.MonkeyPatch.context() as patch:
        build.program()  # the compiled program stays where it is
        patch.setenv("EGRU_DEPLOY_BUILD_DIR", str(tmp_path_factory.mktemp("elf")))
        dense = (compiled / TARGET_DIR / "images" / "pe00000.bin").read_bytes()
        csr, banked = _csr_image(), _banked_image()
        assert _run_image(dense) == "" and _run_image(csr) == "" and _run_image(banked) == ""  # intact images run
        yield {"dense": dense, "csr": csr, "banked": banked}


@needs_qemu
@pytest.mark.parametrize("fields, fragment", C_CASES)
def test_pe_program_refuses_a_corrupt_header_itself(pe_blobs, fields, fragment):
    error = _run_image(header_with(pe_blobs["dense"], **fields))
    assert "pe: invalid image: " in error and fragment in error, error


@needs_qemu
def test_pe_program_refuses_bad_csr_pointers_and_indices(pe_blobs):
    blob = pe_blobs["csr"]
    header = dict(zip(FIELDS, images.HEADER.unpack_from(blob)))
    ptr, idx = header["off_x_ptr"], header["off_x_idx"]
    wild_index = blob[:idx] + bytes([255]) + blob[idx + 1:]  # column 255 of a 96-column slice
    falling = blob[:ptr + 2] + (0xFFFF).to_bytes(2, "little") + blob[ptr + 4:]  # row 0 ends after row 1
    for corrupt in (wild_index, falling):
        error = _run_image(corrupt)
        assert "pe: invalid image: CSR row pointers" in error, error


@needs_qemu
def test_pe_program_refuses_bad_banked_csr_pointers_and_indices(pe_blobs):
    blob = pe_blobs["banked"]
    for name, (_, corrupt) in _banked_corruptions(blob).items():
        error = _run_image(corrupt)
        fragment = "section offset" if name == "last pointer beyond the image" else "CSR row pointers"
        assert "pe: invalid image: " in error and fragment in error, (name, error)


@needs_qemu
@settings(max_examples=6, deadline=None)
@given(word=st.integers(0, images.HEADER.size // 4 - 1), value=st.integers(0, 2 ** 32 - 1))
def test_pe_program_never_faults_on_a_corrupt_header(pe_blobs, word, value):
    """Whatever a header word holds, the C program refuses the image or runs it to the end."""
    blob = bytearray(pe_blobs["dense"])
    blob[4 * word:4 * word + 4] = value.to_bytes(4, "little")
    error = _run_image(bytes(blob))
    assert error == "" or "pe: invalid image: " in error, error


# --------------------------------------------------------------------------- QEMU's semihosting sandbox


@needs_qemu
def test_qemu_runs_in_a_fresh_folder_holding_only_its_files(compiled, monkeypatch):
    seen = []
    popen = subprocess.Popen

    def spy(args, **kwargs):
        if args[0] == qemu.QEMU_COMMAND[0]:
            seen.append((list(args), kwargs["cwd"], sorted(os.listdir(kwargs["cwd"]))))
        return popen(args, **kwargs)

    monkeypatch.setattr(qemu.subprocess, "Popen", spy)
    qemu.check_bundle(compiled, np.load(compiled.parent / "x.npy"), pes=[1])
    (args, cwd, files), = seen
    assert files == ["events.bin", "pe.elf"]
    assert args[-2:] == ["-kernel", "pe.elf"] and not any(os.path.isabs(a) for a in args[1:])
    assert not Path(cwd).exists()  # removed with everything the guest wrote
    assert not Path(cwd).resolve().is_relative_to(compiled.resolve())
