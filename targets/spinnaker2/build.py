"""Build the PE program with arm-none-eabi-gcc (DESIGN.md's Cortex-M4F flags) and link one ELF per
PE memory image.  The linker script gives the PE's real memory (ITCM 32 KB, DTCM 96 KB), so an image
that does not fit fails the link.  Everything is cached by content hash in a build directory.
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
from egru_deploy.targets.spinnaker2 import images

PE_DIR = Path(__file__).parent / "pe"
PE_SOURCES = ("pe.c", "semihosting.c", "startup.c", "qemu_main.c")
PE_HEADERS = ("pe.h", "semihosting.h")
LINKER_SCRIPT = "pe.ld"
LAYOUT_HEADER = "pe_image_layout.h"
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
    """The compiled PE program (an archive of objects), ready to be linked with an image."""

    directory: Path
    archive: Path
    digest: str


@dataclass(frozen=True)
class PEMemory:
    """How the PE's 128 KB are used by the program, and what is left for the memory image."""

    code_bytes: int  # ITCM: .text + .rodata
    runtime_bytes: int  # DTCM: .data + .bss + stack
    image_address: int  # where .pe_image starts in DTCM
    image_capacity: int  # DTCM bytes left for the image
    measured: bool  # False: conservative defaults (no toolchain here)


DTCM_ORIGIN = 0x8000  # pe.ld: the flat PE memory is ITCM (32 KB at 0) then DTCM
# Used when arm-none-eabi-gcc is absent; tests check the measured program never needs more.
DEFAULT_MEMORY = PEMemory(code_bytes=32 * 1024, runtime_bytes=4096, image_address=DTCM_ORIGIN + 2048,
                          image_capacity=96 * 1024 - 4096, measured=False)


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
        keys = ("error", "overflow", "will not fit")
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


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for name in (*PE_SOURCES, *PE_HEADERS, LINKER_SCRIPT):
        digest.update(name.encode() + b"\0" + (PE_DIR / name).read_bytes())
    digest.update(images.c_header().encode())
    digest.update(" ".join((*CFLAGS, *LDFLAGS)).encode())
    digest.update(_run([GCC, "--version"], PE_DIR, "gcc --version").encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def program() -> Program:
    """Compile the PE sources once per content hash."""
    require_toolchain()
    digest = _sources_digest()
    final = build_dir() / f"program-{digest}"
    archive = final / "libpe.a"
    if not archive.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".program-"))
        (tmp / LAYOUT_HEADER).write_text(images.c_header())
        for name in (*PE_SOURCES, *PE_HEADERS, LINKER_SCRIPT):
            shutil.copy(PE_DIR / name, tmp / name)
        objects = [f"{Path(name).stem}.o" for name in PE_SOURCES]
        _run([GCC, *CFLAGS, "-I.", "-c", *PE_SOURCES], tmp, "compiling the PE program")
        _run(["arm-none-eabi-ar", "rcs", "libpe.a", *objects], tmp, "archiving the PE program")
        _publish(tmp, final)
    return Program(final, archive, digest)


def link(image: bytes, name: str = "pe") -> Path:
    """The ELF of the PE program with ``image`` placed in ``.pe_image``; fails if it overflows DTCM."""
    prog = program()
    digest = hashlib.sha256(prog.digest.encode() + image).hexdigest()[:20]
    elf = build_dir() / "elf" / f"{digest}.elf"
    if elf.is_file():
        return elf
    elf.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=elf.parent, prefix=".link-"))
    try:
        (tmp / "image.bin").write_bytes(image)
        (tmp / "image.S").write_text('.section .pe_image,"aw",%progbits\n.balign 8\n.global pe_image\n'
                                     'pe_image:\n.incbin "image.bin"\n')
        _run([GCC, *LDFLAGS, "-T", str(prog.directory / LINKER_SCRIPT), "image.S", str(prog.archive),
              "-o", "pe.elf"], tmp, f"linking {name} ({len(image)} byte image)")
        os.replace(tmp / "pe.elf", elf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return elf


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
    """The program's real memory use, from its ELF linked with an empty image; defaults without gcc."""
    if not toolchain_available():
        return DEFAULT_MEMORY
    sym = symbols(link(b""))
    return PEMemory(code_bytes=sym["__code_bytes"], runtime_bytes=sym["__runtime_bytes"],
                    image_address=sym["__pe_image_start"], image_capacity=sym["__pe_image_capacity"], measured=True)
