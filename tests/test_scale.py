"""Paper-size workloads (egru_deploy.synthetic, benchmarks/bench_scale.py): the same code path at a tenth
of the widths for every workload and target, and the full PTB compile for SpiNNaker2 (slow)."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from egru_deploy import bundle, reference, synthetic
from egru_deploy import report as report_module
from egru_deploy.compile import compile_model
from egru_deploy.hwsim import loihi2 as hwsim_loihi2
from egru_deploy.hwsim import spinnaker2 as hwsim_spinnaker2
from egru_deploy.ir import EGRU, Embedding, Linear
from egru_deploy.prune import prune
from egru_deploy.targets.spinnaker2.language_model import PTB, random_language_model

ROOT = Path(__file__).resolve().parents[1]


def test_paper_workloads_have_the_paper_sizes():
    w = synthetic.WORKLOADS
    assert (w["smnist"].shape.inputs, w["smnist"].shape.hidden, w["smnist"].steps) == (1, (590,), 784)
    assert (w["dvs"].shape.inputs, w["dvs"].shape.hidden) == (2048, (1024,))
    assert w["ptb-1350"].shape.hidden[:2] == (1350, 1350) and w["ptb-2000"].shape.hidden[:2] == (2000, 2000)
    assert all(w[n].shape.inputs == 10_000 and w[n].prune_for("spinnaker2") == 0.9 and w[n].prune_for("loihi2") == 0
               for n in ("ptb-1350", "ptb-2000", "ptb-3x1350"))
    graph = synthetic.random_graph(w["ptb-1350"].scaled(10).shape)
    emb, dec = graph.layers[0], graph.layers[-1]
    assert isinstance(emb, Embedding) and isinstance(dec, Linear) and np.array_equal(dec.weight, emb.weight)  # tied


def test_language_model_builder_is_the_general_one():
    small = type(PTB)(vocab=40, embedding=6, hidden=(8, 7))
    a, b = random_language_model(small, 3), synthetic.random_graph(small.network(), 3)
    assert [type(layer) for layer in a.layers] == [Embedding, EGRU, EGRU, Linear]
    for la, lb in zip(a.layers, b.layers):
        for name in ("weight", "kernel", "recurrent_kernel", "thr"):
            if hasattr(la, name):
                assert np.array_equal(getattr(la, name), getattr(lb, name))


@pytest.mark.parametrize("name", list(synthetic.WORKLOADS))
def test_scaled_workload_compiles_and_emulates_on_both_targets(tmp_path, monkeypatch, name):
    # the report's plot (matplotlib, 1-3 s) is not what this checks
    monkeypatch.setattr(report_module, "save_report_plot", lambda report, path: Path(path).write_bytes(b""))
    workload = synthetic.WORKLOADS[name].scaled(10, steps=24)
    x = workload.sample(2, seed=1)
    for target in ("loihi2", "spinnaker2"):
        graph = workload.graph(target, fit_steps=24, iterations=8)
        amount = workload.prune_for(target)
        active = synthetic.activity(prune(graph, amount) if amount else graph, workload.sample(2, seed=1001))
        assert all(0.08 <= a <= 0.35 for a in active), active  # trained-like: ~20 % of the units fire per step
        report = compile_model(graph, target, tmp_path / target, x, amount)
        res = report["resources"]
        if target == "loihi2":
            assert res["neurocores"] >= 1 and res["chips"] == 1
            qgraph = bundle.load_graph(tmp_path / target)
            run = hwsim_loihi2.run(qgraph, x).result(qgraph)
        else:
            assert res["summary"]["pes"] >= res["summary"]["pes_memory_lower_bound"] >= 1
            system = hwsim_spinnaker2.load(tmp_path / target)
            qgraph, run = system.graph, hwsim_spinnaker2.simulate(system, x).run
        expected = reference.run_int(qgraph, x)
        assert np.array_equal(run.output, expected.output)


PTB_COMPILE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from egru_deploy import synthetic
    from egru_deploy.compile import compile_model
    w = synthetic.WORKLOADS["ptb-1350"]
    graph = w.graph("spinnaker2", fit_steps=35, iterations=8)  # thresholds fitted on a shorter run: build time
    x = w.sample(4, seed=1)
    started = time.perf_counter()
    report = compile_model(graph, "spinnaker2", Path(sys.argv[1]), x, w.prune_for("spinnaker2"))
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) high-water mark into ru_maxrss
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "max_rss_kib": hwm, "summary": report["resources"]["summary"]}))
""")


@pytest.mark.slow
def test_ptb_compiles_for_spinnaker2_within_a_minute_and_4_gib(tmp_path):
    """The paper's PTB model (3 x 1,350, V = 10k, 90 % pruned) in a fresh process: compile_model < 60 s, and the
    whole process (graph build included) < 4 GiB."""
    done = subprocess.run([sys.executable, "-c", PTB_COMPILE, str(tmp_path / "ptb")], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["seconds"] < 60, out
    assert out["max_rss_kib"] * 1024 < 4 * 1024 ** 3, out
    assert out["summary"]["chips"] == 1 and out["summary"]["pes"] <= 1.25 * out["summary"]["pes_memory_lower_bound"]
