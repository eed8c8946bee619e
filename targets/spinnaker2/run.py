"""Board path: run a spinnaker2 bundle on a SpiNNaker2 board through py-spinnaker2.

The board gets exactly what QEMU runs: each PE's memory image (written at the image load address
in its DTCM, ``images.json``), the routers' key/mask tables (``placement.json``) and, per tick, the
host's input packets; the host reads back the packets of the output population.  The PE program
is wrapped as a py-spinnaker2 application (DESIGN.md: a ``BaseApplication`` whose C side calls
``pe_receive`` from the packet handler and ``pe_tick`` from the timer callback).  py-spinnaker2 is
not on PyPI, so it is imported lazily and its absence is reported in one line.
"""
from __future__ import annotations

import numpy as np

from egru_deploy.errors import TargetUnavailable
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.reference import RunResult, quantize_input
from egru_deploy.targets.spinnaker2 import loader
from egru_deploy.targets.spinnaker2.build import PE_DIR

PACKAGE_HINT = ("SpiNNaker2 board runs need py-spinnaker2 (Python package `spinnaker2`, "
                "gitlab.com/spinnaker2/py-spinnaker2), which is not installed; "
                "emulate instead: egru-deploy emulate BUNDLE --backend hwsim|qemu")
SYS_TICK_S = 1e-3  # py-spinnaker2's default simulation tick


def _import_spinnaker2():
    try:
        from spinnaker2 import hardware
        from spinnaker2.application import BaseApplication
    except ImportError:
        raise TargetUnavailable(PACKAGE_HINT) from None
    return hardware, BaseApplication


def host_packets(system: hwsim.System, values: np.ndarray) -> np.ndarray:
    """The host's input packets for quantized inputs (B, T, I), as (sample, tick, key, payload) rows."""
    b, t, unit = np.nonzero(values)
    keys = system.packet_key(0, unit)
    return np.stack([b, t, keys, values[b, t, unit]], axis=1).astype(np.int64)


def run_on_board(bundle_dir, x: np.ndarray, board_ip: str, output_mode: str | None = None) -> RunResult:
    loaded = loader.load(bundle_dir)  # a malformed bundle is reported before a missing package
    system = loaded.system
    inputs = quantize_input(system.graph, x)
    hwsim.check_routing(system)
    hardware, base_application = _import_spinnaker2()

    class EGRUApplication(base_application):
        """The EGRU PE program: the same C kernel and images as the QEMU runs."""

        app_name = "egru_pe"
        source_dir = PE_DIR

        def memory_images(self):
            return {(entry["chip"], entry["core"]): (entry["load_address"], loaded.images[int(index)])
                    for index, entry in loaded.image_map.items()}

        def routing_tables(self):
            return {int(chip): entries for chip, entries in system.placement["routing"].items()}

    latency = len(system.placement["layers"])
    batch, steps = inputs.shape[:2]
    chip = hardware.SpiNNaker2Chip(eth_ip=board_ip)
    received = np.asarray(chip.run(EGRUApplication(), steps + latency, sys_tick_in_s=SYS_TICK_S,
                                   input_packets=host_packets(system, inputs)), np.int64)  # (sample, tick, key, payload)
    values, sequence, output = hwsim.host_output(system, batch, steps, *received.T, output_mode=output_mode)
    return RunResult(output=output, sequence=sequence, int_sequence=values)
