"""Build the PE program with arm-none-eabi-gcc (DESIGN.md's Cortex-M4F flags), in two builds from one kernel:

* ``qemu``: kernel (pe.c) + application layer (app.c) + the QEMU shim (qemu_main.c, semihosting), linked
  once per PE with that PE's regions (data spec, params, image) at their fixed addresses;
* ``board``: kernel + application layer + the board runtime (runtime_board.c: timer, packet receive, send
  with payload), linked here against dummy definitions of the unverified runtime names (runtime_stub.c) so
  a syntax or link break is caught; on a board it is built by py-spinnaker2 from ``board_sources()``.

Both link with pe/pe.ld and the flat 128 KB memory map of ``memory_map.py``, so an image that does not fit
fails the link.  Everything is cached by content hash in a build directory.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from egru_deploy.errors import TargetUnavailable, UserError
from egru_deploy.targets.spinnaker2 import images, memory_map

PE_DIR = Path(__file__).parent / "pe"
KERNEL_SOURCES = ("pe.c", "app.c")
BUILDS = {  # build -> its own sources (beside the kernel's)
    "qemu": ("semihosting.c", "startup.c", "qemu_main.c"),
    "board": ("runtime_board.c", "runtime_stub.c", "startup.c", "semihosting.c"),
}
PE_SOURCES = KERNEL_SOURCES + BUILDS["qemu"]  # the QEMU build (kept for callers that list it)
PE_HEADERS = ("pe.h", "app.h", "semihosting.h", "s2_runtime.h")
LINKER_SCRIPT = "pe.ld"
LAYOUT_HEADER = "pe_image_layout.h"
MAP_HEADER, MAP_LD = "pe_memory_map.h", "pe_memory_map.ld"
BOARD_FILES = ("pe.c", "pe.h", "app.c", "app.h", "runtime_board.c", "s2_runtime.h", LINKER_SCRIPT, "Makefile")
CPU_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2",
             "--specs=nano.specs", "--specs=rdimon.specs")
CFLAGS = (*CPU_FLAGS, "-std=c11", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")
# Our own startup replaces rdimon's crt0 (which would move the stack to wherever the debugger says).
LDFLAGS = (*CPU_FLAGS, "-nostartfiles", "-Wl,--gc-sections")
GCC = "arm-none-eabi-gcc"
NM = "arm-none-eabi-nm"
TOOL_TIMEOUT_S = 120


class BuildError(UserError):
    """The PE program or a PE's ELF could not be built (one line)."""


@dataclass(frozen=True)
class Program:
    """A compiled PE program build (an archive of objects), ready to be linked with a PE's regions."""

    directory: Path
    archive: Path
    digest: str
    kind: str


@dataclass(frozen=True)
class PEMemory:
    """How the PE's 128 KB are used by the program, and what is left for the memory image."""

    code_bytes: int  # .text + .rodata (in the first 32 KB)
    runtime_bytes: int  # .data + .bss + stack
    image_address: int  # where the image starts (memory_map.IMAGE_ADDRESS, fixed)
    image_capacity: int  # bytes from there to the stack: image, and on output PEs the record
    measured: bool  # False: code and runtime sizes are conservative defaults (no toolchain here)


# The map is fixed, so the image address and capacity are the same with or without a toolchain; only the
# code and runtime sizes are then the map's bounds instead of measured.
DEFAULT_MEMORY = PEMemory(code_bytes=memory_map.PROGRAM_BYTES, runtime_bytes=memory_map.STACK_BYTES,
                          image_address=memory_map.IMAGE_ADDRESS, image_capacity=memory_map.IMAGE_CAPACITY,
                          measured=False)


def toolchain_available() -> bool:
    return shutil.which(GCC) is not None and shutil.which(NM) is not None


def require_toolchain() -> None:
    if not toolchain_available():
        raise TargetUnavailable(f"{GCC} not found: run scripts/setup_arm.sh (as root) to install "
                                f"gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm")


def build_dir() -> Path:
    root = os.environ.get("EGRU_DEPLOY_BUILD_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                           "egru-deploy", "spinnaker2")
    return Path(root)


def _run(args: list, cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: {args[0]} did not finish within {TOOL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        keys = ("error", "overflow", "will not fit", "beyond")
        message = " | ".join(line.split(": ", 1)[-1].strip() for line in done.stderr.splitlines()
                             if any(k in line.lower() for k in keys) and "ld returned" not in line)
        raise BuildError(f"{what} failed: {message or done.stderr.strip()[-300:]}")
    return done.stdout


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place; a concurrent builder may have got there first."""
    try:
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def generated_files() -> dict[str, str]:
    """The files the PE program is built with that come from Python (image layout, memory map)."""
    return {LAYOUT_HEADER: images.c_header(), MAP_HEADER: memory_map.c_header(), MAP_LD: memory_map.ld_symbols()}


def _sources(kind: str) -> tuple[str, ...]:
    return KERNEL_SOURCES + BUILDS[kind]


def _sources_digest(kind: str) -> str:
    digest = hashlib.sha256(kind.encode())
    for name in sorted({*_sources(kind), *PE_HEADERS, LINKER_SCRIPT}):
        digest.update(name.encode() + b"\0" + (PE_DIR / name).read_bytes())
    for name, text in generated_files().items():
        digest.update(name.encode() + b"\0" + text.encode())
    digest.update(" ".join((*CFLAGS, *LDFLAGS)).encode())
    digest.update(_run([GCC, "--version"], PE_DIR, "gcc --version").encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=4)
def program(kind: str = "qemu") -> Program:
    """Compile one build's sources once per content hash."""
    require_toolchain()
    digest = _sources_digest(kind)
    final = build_dir() / f"program-{kind}-{digest}"
    archive = final / "libpe.a"
    if not archive.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".program-"))
        for name, text in generated_files().items():
            (tmp / name).write_text(text)
        sources = _sources(kind)
        for name in {*sources, *PE_HEADERS, LINKER_SCRIPT}:
            shutil.copy(PE_DIR / name, tmp / name)
        objects = [f"{Path(name).stem}.o" for name in sources]
        _run([GCC, *CFLAGS, "-I.", "-c", *sources], tmp, f"compiling the PE program ({kind} build)")
        _run(["arm-none-eabi-ar", "rcs", "libpe.a", *objects], tmp, f"archiving the PE program ({kind} build)")
        _publish(tmp, final)
    return Program(final, archive, digest, kind)


def default_regions(image: bytes) -> memory_map.Regions:
    """The regions of a QEMU check run: the image with identity key translation, no record, n_ticks 0."""
    if len(image) >= images.HEADER.size:
        header = dict(zip((name for name, _ in images.HEADER_FIELDS), images.HEADER.unpack_from(image)))
        key_base, n_units = header["key_base"], header["n_units"]
    else:
        key_base = n_units = 0
    return memory_map.Regions(memory_map.identity_params(key_base, n_units, images.CHANNEL_BIT), image)


def link(image: bytes, name: str = "pe", regions: memory_map.Regions | None = None, blob: bytes | None = None) -> Path:
    """The QEMU ELF of the PE program with its regions linked at their fixed addresses: ``blob`` (the memory
    from REGIONS_ADDRESS on, as the host writes it), else ``regions``, else ``default_regions(image)``;
    fails if they do not fit the PE's memory."""
    prog = program("qemu")
    if blob is None:
        blob = (regions or default_regions(image)).blob()
    digest = hashlib.sha256(prog.digest.encode() + blob).hexdigest()[:20]
    elf = build_dir() / "elf" / f"{digest}.elf"
    if elf.is_file():
        return elf
    elf.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=elf.parent, prefix=".link-"))
    try:
        (tmp / "regions.bin").write_bytes(blob)
        (tmp / "regions.S").write_text('.section .pe_regions,"aw",%progbits\n.global pe_regions\n'
                                       'pe_regions:\n.incbin "regions.bin"\n')
        _run([GCC, *LDFLAGS, "-L", str(prog.directory), "-T", LINKER_SCRIPT, "regions.S", str(prog.archive),
              "-o", "pe.elf"], tmp, f"linking {name} ({len(image)} byte image)")
        os.replace(tmp / "pe.elf", elf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return elf


@lru_cache(maxsize=1)
def link_board() -> Path:
    """The board build linked against the stub runtime (a compile and link check, not a runnable program)."""
    prog = program("board")
    elf = prog.directory / "board.elf"
    if not elf.is_file():
        tmp = Path(tempfile.mkdtemp(dir=prog.directory, prefix=".link-"))
        try:
            _run([GCC, *LDFLAGS, "-L", str(prog.directory), "-T", LINKER_SCRIPT, "-Wl,--whole-archive",
                  str(prog.archive), "-Wl,--no-whole-archive", "-o", "board.elf"], tmp, "linking the board build")
            os.replace(tmp / "board.elf", elf)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return elf


def board_sources(destination) -> Path:
    """Write the board program's folder (sources, generated headers, pe.ld, Makefile) for py-spinnaker2's
    application build; returns the folder."""
    out = Path(destination)
    out.mkdir(parents=True, exist_ok=True)
    for name in BOARD_FILES:
        shutil.copy(PE_DIR / name, out / name)
    for name, text in generated_files().items():
        (out / name).write_text(text)
    return out


def symbols(elf: Path) -> dict[str, int]:
    out = _run([NM, "-P", str(elf)], elf.parent, "reading ELF symbols")
    values = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            values[parts[0]] = int(parts[2], 16)
    return values


@lru_cache(maxsize=1)
def measure() -> PEMemory:
    """The program's real memory use, from the QEMU ELF linked with an empty image (the board build must
    fit the same program region: its link fails otherwise); defaults without gcc."""
    if not toolchain_available():
        return DEFAULT_MEMORY
    link_board()
    sym = symbols(link(b""))
    return PEMemory(code_bytes=sym["__code_bytes"], runtime_bytes=sym["__runtime_bytes"],
                    image_address=sym["__pe_image_start"], image_capacity=sym["__pe_image_capacity"], measured=True)


def program_sizes() -> dict[str, dict[str, int]]:
    """Per build: code, data + bss, and the end of the program (must stay below memory_map.PROGRAM_BYTES)."""
    out = {}
    for kind, elf in (("qemu", link(b"")), ("board", link_board())):
        sym = symbols(elf)
        out[kind] = {"code_bytes": sym["__code_bytes"], "runtime_bytes": sym["__runtime_bytes"],
                     "program_end": sym["__program_bytes"], "program_region": memory_map.PROGRAM_BYTES}
    return out
