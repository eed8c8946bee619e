"""SpiNNaker2 bring-up, step 2 and 3 of docs/spinnaker2_board.md: our application on one PE.

Builds a one-layer bundle (2 inputs -> EGRU of 4 units, all on one PE) and a hand-written input of 3
steps, then prints what the board must produce:

* the regions the host writes into that PE (addresses and sizes, memory_map.py);
* the record region the PE must hold after the run, from the QEMU build of the same program on exactly that
  memory (and the integer interpreter's values, which it equals);
* with --board IP (and py-spinnaker2 installed): the board run's output next to it.

    python scripts/s2_bringup.py [-o DIR] [--board IP]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from egru_deploy import bundle, ir, reference
from egru_deploy.ir import EGRU, EGRUQuant, Graph, Input, QType
from egru_deploy.profiles import SPINNAKER2
from egru_deploy.targets.spinnaker2 import application, loader, memory_map
from egru_deploy.targets.spinnaker2.compile import compile_spinnaker2

F = SPINNAKER2.state_frac
X = np.array([[[1.0, 0.0], [0.0, 0.0], [0.5, -1.0]]], np.float32)  # 1 sample, 3 steps, 2 inputs


def one_pe_graph() -> Graph:
    """Weights chosen so that units fire at different steps (int8 kernels, Q.12 thresholds)."""
    kernel = np.zeros((2, 12), np.int8)
    kernel[0, 8:12] = [100, 60, 30, -40]  # the candidate gate g of each unit from input 0
    kernel[1, 8:12] = [0, 50, -50, 100]  # ... and from input 1
    quant = EGRUQuant(kernel=QType(8, 7), recurrent_kernel=QType(8, 8), bias=QType(32, F),
                      recurrent_bias=QType(32, F), thr=QType(32, F), input=QType(32, 8))
    layer = EGRU(kernel=kernel, recurrent_kernel=np.zeros((4, 12), np.int8), bias=np.zeros(12, np.int64),
                 recurrent_bias=np.zeros(12, np.int64), thr=np.full(4, 1 << (F - 4)), quant=quant)
    return Graph(Input(2), (layer,), "sequence", profile="spinnaker2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="s2-bringup", help="bundle folder to write (an old bundle is replaced)")
    parser.add_argument("--board", help="board IP: also run on the board through py-spinnaker2")
    args = parser.parse_args(argv)
    graph = one_pe_graph()
    out = Path(args.out)
    with bundle.writing(out, force=True) as tmp:
        ir.save(graph, tmp)
        compile_spinnaker2(graph, tmp)
        bundle.write_manifest(tmp, "spinnaker2", graph.profile)
    plan = application.board_plan(loader.load(out))
    values = reference.quantize_input(graph, X)[0]
    sim_ticks = X.shape[1] + plan.latency
    pes = application.planned_pes(plan, values, sim_ticks)
    print(f"bundle {out}: {len(pes)} PEs (input + layer), {sim_ticks} ticks")
    for pe in pes:
        print(f"  {pe.population} units {pe.start}..{pe.stop - 1}, key offset 0x{pe.key_offset:x}")
        for word_address, data in pe.writes:
            start, end = 4 * word_address, 4 * (word_address + len(data))
            print(f"    write 0x{start:05x} .. 0x{end:05x} ({end - start} bytes)")
        if pe.record_words:
            print(f"    record region {4 * pe.record_words} bytes after the image; status at "
                  f"0x{memory_map.STATUS_ADDRESS:05x} must read done = 1, error = 0")
    want = reference.run_int(graph, X).int_sequence[0]
    try:
        runs = application.emulate_board(plan, X, pes, sim_ticks)
    except Exception as e:  # no QEMU here: show the interpreter's values only
        print(f"QEMU run not possible ({e}); the integer interpreter's events per step:\n{want}")
        return 0
    record = next(out.record for pe, out in zip(pes, runs) if pe.record_words)
    got = memory_map.decode_record(record, 4, sim_ticks)
    print("record region (QEMU, same memory): per tick [tick, 4 x float32 bits] ->")
    for tick, row in enumerate(np.asarray(record).reshape(sim_ticks, 5)):
        print(f"  tick {tick}: words {[hex(int(w)) for w in row]}  values {got[tick].tolist()}")
    assert np.array_equal(got[plan.latency:].astype(np.int64), want), "QEMU record differs from the interpreter"
    print(f"= the integer interpreter's events at ticks {plan.latency}..: {want.tolist()}")
    if args.board:
        from egru_deploy.targets.spinnaker2.run import run_on_board

        result = run_on_board(out, X, args.board)
        same = np.array_equal(result.int_sequence[0], want)
        print(f"board: {result.int_sequence[0].tolist()} -> {'equal' if same else 'DIFFERENT'}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
