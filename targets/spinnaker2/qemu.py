"""Run PE programs on QEMU's Cortex-M4 board (mps2-an386) and check them against hwsim bit for bit.

Each PE's ELF (the PE program linked with that PE's memory image) is fed, through semihosting
files, the packets hwsim routed to it, tick by tick, for a batch of samples in one launch; every
packet it sends and its saturation counters come back and must equal hwsim's.  If every PE
reproduces its own packets from the packets routed to it, the PEs wired together reproduce the
whole run, so the ``qemu`` backend returns the network output assembled from the QEMU output PEs.
A run that does not finish in time is killed (its process group) and reported in one line.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from egru_deploy import reference
from egru_deploy.errors import TargetUnavailable, UserError
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.targets.spinnaker2 import build, images, loader

QEMU_COMMAND = ("qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
                "-semihosting-config", "enable=on,target=native")
STREAM_MAGIC = 0x32535645  # "EVS2"
DEFAULT_TIMEOUT_S = 60.0


class QemuError(UserError):
    """A QEMU run failed, timed out, or disagreed with hwsim (one line)."""


def qemu_available() -> bool:
    return shutil.which(QEMU_COMMAND[0]) is not None


def require_qemu() -> None:
    build.require_toolchain()
    if not qemu_available():
        raise TargetUnavailable(f"{QEMU_COMMAND[0]} not found: run scripts/setup_arm.sh (as root) to install it")


def encode_stream(received: list[list[tuple[np.ndarray, np.ndarray]]]) -> bytes:
    """events.bin: magic, samples, ticks; per sample and tick: count, (key, payload) pairs."""
    n_ticks = len(received[0]) if received else 0
    words = [np.array([STREAM_MAGIC, len(received), n_ticks], np.uint32)]
    for sample in received:
        for keys, payloads in sample:
            if payloads.size and (payloads.min() < -(1 << 31) or payloads.max() >= 1 << 31):
                raise QemuError("a packet payload does not fit 32 bits")
            pairs = np.empty((len(keys), 2), np.uint32)
            pairs[:, 0], pairs[:, 1] = keys, payloads.astype(np.int32).view(np.uint32)
            words += [np.array([len(keys)], np.uint32), pairs.reshape(-1)]
    return np.concatenate(words).astype("<u4").tobytes()


def decode_sent(blob: bytes, n_samples: int, n_ticks: int):
    """sent.bin -> (packets per sample and tick, sorted by key; counters (n_samples, len(COUNTERS)))."""
    words = np.frombuffer(blob, "<u4")
    cursor, packets, counters = 0, [], []
    try:
        for _ in range(n_samples):
            ticks = []
            for _ in range(n_ticks):
                n = int(words[cursor])
                pairs = words[cursor + 1:cursor + 1 + 2 * n].reshape(n, 2)
                cursor += 1 + 2 * n
                order = np.argsort(pairs[:, 0], kind="stable")
                ticks.append((pairs[order, 0].copy(), pairs[order, 1].view(np.int32).astype(np.int64)))
            packets.append(ticks)
            counters.append(words[cursor:cursor + len(images.COUNTERS)].astype(np.int64))
            cursor += len(images.COUNTERS)
    except (IndexError, ValueError):
        raise QemuError(f"sent.bin is truncated ({len(blob)} bytes)") from None
    if cursor != len(words):
        raise QemuError(f"sent.bin has {len(words) - cursor} unexpected trailing words")
    return packets, np.array(counters).reshape(n_samples, len(images.COUNTERS))


def run_elf(elf: Path, events: bytes, timeout_s: float = DEFAULT_TIMEOUT_S, what: str = "PE") -> bytes:
    """Run one PE ELF under QEMU with ``events`` as events.bin; return sent.bin.

    Semihosting gives the guest file I/O on the host, so QEMU runs in a fresh temporary folder
    holding only this run's files (the ELF, events.bin) under relative names, and the PE program
    opens only bare names there (semihosting.c says what semihosting would still allow).
    """
    require_qemu()
    with tempfile.TemporaryDirectory(prefix="egru-s2-qemu-") as tmp:
        shutil.copyfile(elf, Path(tmp, "pe.elf"))
        Path(tmp, "events.bin").write_bytes(events)
        process = subprocess.Popen([*QEMU_COMMAND, "-kernel", "pe.elf"], cwd=tmp, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own child's group: QEMU and nothing else
            process.communicate()
            raise QemuError(f"QEMU run of {what} did not finish within {timeout_s:g} s and was killed") from None
        message = output.decode(errors="replace").strip().splitlines()
        if process.returncode != 0:
            raise QemuError(f"QEMU run of {what} failed (exit {process.returncode}): "
                            f"{message[-1] if message else 'no output'}")
        sent = Path(tmp, "sent.bin")
        if not sent.is_file():
            raise QemuError(f"QEMU run of {what} wrote no sent.bin")
        return sent.read_bytes()


@dataclass(frozen=True)
class PECheck:
    pe: int
    samples: int
    ticks: int
    packets: int  # packets compared
    equal: bool
    mismatch: str  # first difference, "" when equal
    packets_by_tick: list  # QEMU's packets per sample and tick


def check_pe(loaded: loader.Spinnaker2Bundle, result: hwsim.Spinnaker2Result, pe_index: int,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> PECheck:
    """Run one PE on QEMU with the packets hwsim routed to it; compare everything it sends."""
    stream = hwsim.pe_packets(loaded.system, result, pe_index)
    elf = build.link(loaded.images[pe_index], name=f"PE {pe_index}")
    n_samples, n_ticks = len(stream.received), len(stream.received[0])
    blob = run_elf(elf, encode_stream(stream.received), timeout_s, what=f"PE {pe_index}")
    got, counters = decode_sent(blob, n_samples, n_ticks)
    mismatch, compared = "", 0
    for b in range(n_samples):
        for s in range(n_ticks):
            (k_want, p_want), (k_got, p_got) = stream.sent[b][s], got[b][s]
            compared += len(k_want)
            if not mismatch and (not np.array_equal(k_want, k_got) or not np.array_equal(p_want, p_got)):
                mismatch = (f"PE {pe_index} sample {b} tick {s}: hwsim sent {len(k_want)} packets, QEMU "
                            f"{len(k_got)}; first differing (key, payload): "
                            f"{_first_difference(k_want, p_want, k_got, p_got)}")
    totals = counters.sum(axis=0)
    want = np.array([stream.saturations.get(kind, 0) for kind in images.COUNTERS])
    if not mismatch and not np.array_equal(totals, want):
        mismatch = (f"PE {pe_index}: counters {dict(zip(images.COUNTERS, totals.tolist()))} vs hwsim "
                    f"{dict(zip(images.COUNTERS, want.tolist()))}")
    return PECheck(pe_index, n_samples, n_ticks, compared, not mismatch, mismatch, got)


def _first_difference(k_want, p_want, k_got, p_got) -> str:
    want = list(zip(k_want.tolist(), p_want.tolist()))
    got = list(zip(k_got.tolist(), p_got.tolist()))
    for a, b in zip(want, got):
        if a != b:
            return f"hwsim {a} vs QEMU {b}"
    longer, who = (want, "hwsim") if len(want) > len(got) else (got, "QEMU")
    return f"{who} has extra {longer[min(len(want), len(got))]}"


def check_bundle(bundle_dir, x: np.ndarray, pes=None, timeout_s: float = DEFAULT_TIMEOUT_S, initial_events=None):
    """hwsim run + QEMU run of each PE (all by default); returns (hwsim result, checks).

    Initial events are not supported (the PEs start from zero events): a one-line error."""
    loaded = loader.load(bundle_dir)  # a malformed bundle is reported even where QEMU is missing
    reference.refuse_initial_events(initial_events, "the SpiNNaker2 PE program under QEMU")
    require_qemu()
    result = hwsim.simulate(loaded.system, x, keep_streams=True)
    indices = range(len(loaded.system.pes)) if pes is None else pes
    return loaded.system, result, [check_pe(loaded, result, i, timeout_s) for i in indices]


def run_bundle(bundle_dir, x: np.ndarray, output_mode: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
               initial_events=None):
    """The ``qemu`` backend: every PE on QEMU; the output is read from the output PEs' packets."""
    system, result, checks = check_bundle(bundle_dir, x, timeout_s=timeout_s, initial_events=initial_events)
    for check in checks:
        if not check.equal:
            raise QemuError(f"QEMU disagrees with hwsim: {check.mismatch}")
    first, stop = system.placement["layers"][-1]["pes"]
    batch, steps = result.run.int_sequence.shape[:2]
    rows = [(b, tick, keys, payloads) for check in checks[first:stop]
            for b, ticks in enumerate(check.packets_by_tick) for tick, (keys, payloads) in enumerate(ticks)]
    sample = np.concatenate([np.full(len(keys), b) for b, _, keys, _ in rows])
    tick = np.concatenate([np.full(len(keys), t) for _, t, keys, _ in rows])
    keys = np.concatenate([k for _, _, k, _ in rows]).astype(np.int64)
    payloads = np.concatenate([p for _, _, _, p in rows])
    values, sequence, output = hwsim.host_output(system, batch, steps, sample, tick, keys, payloads, output_mode)
    return replace(result.run, int_sequence=values, sequence=sequence, output=output)
