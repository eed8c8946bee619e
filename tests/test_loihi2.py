"""Loihi 2 stock-process circuit: gate tables, constants, hwsim == circuit spec, hwsim == Lava's stock fixed_pt
models (bit for bit), mapping, deployed processes, bundles, board path."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from egru_deploy import bundle, circuit, reference
from egru_deploy.bundle import BundleError
from egru_deploy.errors import TargetUnavailable, UserError
from egru_deploy.hwsim import loihi2 as hwsim
from egru_deploy.ir import EGRU, Embedding, EGRUQuant, Graph, Input, Linear, LinearQuant, QType
from egru_deploy.profiles import LOIHI2
from egru_deploy.targets.loihi2 import lava_compat
from egru_deploy.targets.loihi2.mapping import ChipLimits, MappingError, assign
from egru_deploy.targets.loihi2.netlist import D, CircuitError, build
from egru_deploy.targets.loihi2.network import check_weights

from lava_env import LAVA_ERROR, needs_lava  # noqa: E402  (imports Lava first, see lava_env)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_digits = pytest.mark.skipif(not (EXAMPLES / "digits_egru.pt").is_file(),
                                  reason="examples/digits_egru.pt not built yet")
F, E = LOIHI2.state_frac, LOIHI2.event_frac
STATE_Q, EVENT_Q = QType(LOIHI2.state_bits, F), QType(LOIHI2.event_bits, E)
LAVA_SEEDS = range(22)
ZONEOUT = (0.0, 0.25, 0.6, 0.0, 0.1, 0.5)  # EvNN's eval blend, per random net


def random_loihi2_graph(seed: int) -> tuple[Graph, np.ndarray]:
    """A small graph quantized for loihi2 (1-3 EGRU layers, optional embedding, trace, ReLU projection,
    readout) and one input sequence of 6-10 steps.  Zoneout (``ZONEOUT[seed % 6]``, every layer) and
    the last layer's trace into the readout or output (seeds = 1 mod 3) are set by the seed without
    drawing from its random stream.  Seed 7 drives inputs and biases towards the
    ends of their ranges so the accumulator, state and output saturation counters are exercised;
    its Dense sums reach 2**29, beyond the 24-bit accumulator but below 2**31, where Lava's int32
    Dense would wrap instead of summing exactly.
    """
    rng = np.random.default_rng(seed)
    extreme = seed == 7
    steps, in_size = int(rng.integers(6, 11)), int(rng.integers(3, 9))
    tokens = seed % 5 == 3
    layers, size = [], in_size
    in_q = QType(LOIHI2.event_bits, 12 if extreme else int(rng.integers(4, 9)))
    if tokens:
        layers.append(Embedding(rng.integers(-(1 << in_q.frac), 1 << in_q.frac, (11, in_size)), qweight=in_q))

    def weights(rows, cols, density):
        w = 2 * rng.integers(-63, 64, (rows, cols)) * (rng.random((rows, cols)) < density)
        return w.astype(np.int8)


    def biases(n, layer_index):
        if extreme and layer_index == 0:  # large: the combined z/r constants reach 2**22, near the 24-bit range
            return rng.choice([-1, 1], n) * ((1 << 21) - rng.integers(0, 1 << 12, n))
        return rng.integers(-(1 << (F - 1)), 1 << (F - 1), n)

    n_egru = 1 + seed % 3
    for i in range(n_egru):
        h = int(rng.integers(4, 25))
        quant = EGRUQuant(kernel=QType(8, int(rng.integers(5, 8))), recurrent_kernel=QType(8, int(rng.integers(6, 9))),
                          bias=STATE_Q, recurrent_bias=STATE_Q, thr=STATE_Q, input=in_q)
        layers.append(EGRU(kernel=weights(size, 3 * h, rng.choice([1.0, 0.4])),
                           recurrent_kernel=weights(h, 3 * h, rng.choice([1.0, 0.3])),
                           bias=biases(3 * h, i),
                           recurrent_bias=rng.integers(-(1 << (F - 2)), 1 << (F - 2), 3 * h),
                           thr=circuit.on_threshold_grid(rng.integers(0, 1 << (F - 2), h)),
                           use_trace=bool(rng.random() < 0.3) and i < n_egru - 1 or (i == n_egru - 1 and seed % 3 == 1),
                           zoneout=ZONEOUT[seed % len(ZONEOUT)], quant=quant))
        size, in_q = h, EVENT_Q
    readouts = [] if seed % 4 == 1 else ([True, False] if seed % 4 == 2 else [False])
    for relu in readouts:
        out_size = int(rng.integers(2, 9))
        out_q = QType(LOIHI2.event_bits, 24 if extreme else 10)  # 24: the rescale is a left shift
        quant = LinearQuant(weight=QType(8, 7), bias=out_q, input=in_q, output=out_q)
        layers.append(Linear(weights(out_size, size, 1.0), rng.integers(-(1 << 9), 1 << 9, out_size), relu=relu,
                             quant=quant))
        size, in_q = out_size, out_q
    graph = Graph(Input(11 if tokens else in_size, tokens=tokens), tuple(layers), "sequence", profile=LOIHI2.name)
    if tokens:
        x = rng.integers(0, 11, (1, steps))
    else:
        x = (rng.random((1, steps, in_size)) * (120.0 if extreme else 2.0)).astype(np.float32)
    return graph, x


def assert_same_chip_run(a: hwsim.ChipRun, b: hwsim.ChipRun) -> None:
    assert a.steps == b.steps and a.output.shape == b.output.shape
    np.testing.assert_array_equal(a.output, b.output)
    for x, y in zip(a.layer_events, b.layer_events, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.spike_counts, b.spike_counts, strict=True):
        np.testing.assert_array_equal(x, y)


def assert_same_result(a: reference.RunResult, b: reference.RunResult) -> None:
    np.testing.assert_array_equal(a.int_sequence, b.int_sequence)
    np.testing.assert_array_equal(a.output, b.output)
    for x, y in zip(a.layer_events, b.layer_events, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.events, b.events, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.saturations == b.saturations


# --------------------------------------------------------------------------- the circuit's arithmetic


@pytest.mark.parametrize("n, sigmoid_error, tanh_error", [(2, 0.07, 0.12), (4, 0.036, 0.075), (6, 0.026, 0.045),
                                                          (8, 0.015, 0.03)])
def test_relu_chords_approximate_sigmoid_and_tanh(n, sigmoid_error, tanh_error):
    # the bounds: the chord fit's largest error plus the sigmoid's 8-bit output step (2**-8)
    gates = circuit.ChordGates(n, n)
    a = np.arange(-12 << F, 12 << F, 7)
    sig = gates.sigmoid(a, F) / (1 << F)
    tanh = gates.tanh(a, F) / (1 << F)
    exact = a / (1 << F)
    assert np.abs(sig - 1 / (1 + np.exp(-exact))).max() < sigmoid_error
    assert np.abs(tanh - np.tanh(exact)).max() < tanh_error
    assert np.all(np.diff(sig) >= 0) and np.all(np.diff(tanh) >= 0)  # non-negative slopes: monotonic
    assert sig.min() == 0 and tanh.min() == -1
    table = gates.sigmoid_table(F)
    assert all(w % 2 == 0 and -256 <= w <= 254 for w in table.weights)  # even 8-bit mantissas
    assert gates.relus_per_unit == 3 * n


def test_chord_sum_equals_relu_units_combined_by_the_next_connection():
    table = circuit.chords("sigmoid", 4, F)
    a = np.arange(-40000, 40000, 13)[None]
    units = np.maximum(a[..., None, :] - np.array(table.knots)[:, None], 0)
    by_hand = np.floor((units * np.array(table.weights)[:, None]).sum(axis=-2) / 2.0 ** -table.exp).astype(np.int64)
    np.testing.assert_array_equal(table(a), by_hand)


@pytest.mark.parametrize("value", [0, 1, -1, 127, -128, 128, 255, -129, 65535, 4096,
                                   circuit.PHASE_CONSTANT_MAX, -circuit.PHASE_CONSTANT_MAX])
def test_phase_digits_rebuild_every_constant_in_range(value):
    digits = circuit.phase_digits(value)
    assert all(-128 <= m <= 127 for m in digits)
    assert sum(m * 256 ** d for d, m in enumerate(digits)) == value
    assert circuit.PHASE_CONSTANT_MAX < circuit.CONSTANT_LIMIT
    with pytest.raises(ValueError, match="does not fit 3 phase-line digits"):
        circuit.phase_digits(circuit.PHASE_CONSTANT_MAX + 1)


def test_threshold_grid_holds_the_reset_weight_exactly():
    thr = np.array([0, 1, 127, 300, 1229, 4095])
    on_grid = circuit.on_threshold_grid(thr)
    weights, exp = circuit.threshold_weights(on_grid)
    assert exp >= -1 and np.all(weights % 2 == 0) and np.abs(weights).max() <= 254
    np.testing.assert_array_equal(circuit.shift(weights, exp), on_grid)
    assert np.abs(on_grid - thr).max() <= 1 << exp
    small = np.array([0, 5, 127])
    np.testing.assert_array_equal(circuit.on_threshold_grid(small), small)  # e = -1: every integer to 127


def test_zoneout_weight_is_exact_for_no_zoneout():
    assert circuit.zoneout_weight(0.0) == circuit.IDENTITY
    w, e = circuit.zoneout_weight(0.25)
    assert e == -8 and w == 192


# --------------------------------------------------------------------------- hwsim == spec, netlist


@pytest.mark.parametrize("seed", range(12))
def test_hwsim_equals_integer_reference(seed):
    graph, x = random_loihi2_graph(seed)
    x = np.concatenate([x, x[:, ::-1], x * 0], axis=0)  # a batch
    chip_run = hwsim.run(graph, x)
    assert_same_result(chip_run.result(graph), reference.run_int(graph, x))
    # the sinks hold values only at the output's level of each input step
    pop, level = chip_run.netlist.output
    at = chip_run.netlist.offsets[chip_run.netlist.populations[pop].layer] + level
    mask = np.ones(chip_run.output.shape[1], bool)
    mask[at + D * np.arange(x.shape[1])] = False
    assert not chip_run.output[:, mask].any() and chip_run.output.shape[1] == chip_run.netlist.chip_steps(x.shape[1])


def test_extreme_seed_counts_values_beyond_24_bits():
    graph, x = random_loihi2_graph(7)
    saturations = hwsim.run(graph, x).saturations
    assert saturations and saturations == reference.run_int(graph, x).saturations
    assert "accumulator" in {key.split(".")[1] for key in saturations}


def test_netlist_uses_only_stock_processes_and_even_weights():
    graph, _ = random_loihi2_graph(4)
    net = build(graph)
    check_weights(net)
    for p in net.populations.values():
        assert p.lava_class.startswith("lava.proc.")
    for c in net.connections:
        assert c.kind in ("dense", "sparse") and np.all(c.values % 2 == 0)
        assert c.rows.max() < c.shape[0] and c.cols.max() < c.shape[1]
    # every segment's level fits the circuit; every unit of an EGRU has its 21 + 2s + t neurons
    layer = next(i for i, lay in enumerate(graph.layers) if isinstance(lay, EGRU))
    h = graph.layers[layer].hidden
    per_unit = sum(p.size for p in net.populations.values() if p.layer == layer) / h
    relays = D - 1 if graph.layers[layer].use_trace else 0
    assert per_unit == 21 + LOIHI2.activation.relus_per_unit + (1 + relays if graph.layers[layer].use_trace else 0)


def test_activity_counts_messages_and_synaptic_ops():
    graph, x = random_loihi2_graph(0)
    chip_run = hwsim.run(graph, x)
    act = chip_run.activity
    layer = graph.layers[0]
    payload = reference.quantize_input(graph, x)
    # the input Dense reads, for every non-zero input payload, its non-zero kernel entries
    dense_in = next(c for c in chip_run.netlist.connections if c.source == "input")
    expected = sum(np.count_nonzero(layer.kernel[i]) for i in range(layer.in_size)
                   for _ in range(np.count_nonzero(payload[0, :, i])))
    assert np.count_nonzero(dense_in.values) == np.count_nonzero(layer.kernel)
    assert act.synaptic_ops["l0_pre"].sum() >= expected
    events = chip_run.result(graph).layer_events[0]
    assert act.messages["l0_events"].sum() == np.count_nonzero(events)


def test_refuses_graph_for_another_profile():
    graph, x = random_loihi2_graph(0)
    with pytest.raises(UserError, match="loihi2"):
        hwsim.run(replace(graph, profile="spinnaker2"), x)


def test_refuses_odd_weight_mantissas():
    graph, _ = random_loihi2_graph(0)
    layer = graph.layers[0]
    odd = layer.kernel.copy()
    odd[0, 0] = 3
    with pytest.raises(UserError, match="even mantissas"):
        check_weights(build(graph.with_layers([replace(layer, kernel=odd), *graph.layers[1:]])))


def test_refuses_threshold_off_the_reset_grid():
    graph, _ = random_loihi2_graph(0)
    layer = graph.layers[0]
    thr = layer.thr.copy()
    thr[1] = 1001  # the largest threshold needs exponent >= 2: odd values are off the grid
    thr[0] = 1008  # on the grid of exponent 2 (multiples of 8)
    with pytest.raises(CircuitError, match=r"layer 0: threshold 1001 \(unit 1\) is not a multiple of 8") as error:
        build(graph.with_layers([replace(layer, thr=thr), *graph.layers[1:]]))
    assert "\n" not in str(error.value)


def test_refuses_constant_beyond_24_bits_naming_the_layer():
    graph, _ = random_loihi2_graph(0)
    layer = graph.layers[0]
    bias, recurrent_bias = layer.bias.copy(), layer.recurrent_bias.copy()
    bias[0], recurrent_bias[0] = (1 << 23) - 1, 1 << 22  # each fits; z's combined constant does not
    with pytest.raises(CircuitError, match=r"layer 0: constant .* does not fit the 24-bit range of the phase lines") as error:
        build(graph.with_layers([replace(layer, bias=bias, recurrent_bias=recurrent_bias), *graph.layers[1:]]))
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- Lava == hwsim


@needs_lava
@pytest.mark.slow
@pytest.mark.parametrize("seed", LAVA_SEEDS)
def test_lava_stock_processes_equal_hwsim(seed):
    from egru_deploy.targets.loihi2 import network

    graph, x = random_loihi2_graph(seed)
    assert_same_chip_run(network.run(graph, x), hwsim.run(graph, x))


def test_lava_refuses_initial_events_and_hwsim_takes_them():
    from egru_deploy.targets.loihi2 import network

    graph, x = random_loihi2_graph(1)
    y0 = [np.full((1, layer.hidden), 1 << E) for layer in graph.egru_layers]
    with pytest.raises(UserError, match="Lava network: initial events are not supported") as error:
        network.run(graph, x, initial_events=y0)
    assert "\n" not in str(error.value)
    assert_same_result(hwsim.emulate(graph, x, initial_events=y0), reference.run_int(graph, x, y0))


def test_lava_compat_patches_only_the_mutable_defaults():
    source = ("from __future__ import annotations\nfrom dataclasses import dataclass\n\n@dataclass\n"
              "class CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n    y: int = 0\n")
    patched = lava_compat.patch_var_model_source(source)
    assert patched.startswith("from __future__ import annotations\nimport dataclasses as _dataclasses\n")
    assert "    x: ByteEncoder = _dataclasses.field(default_factory=ByteEncoder)\n    y: int = 0\n" in patched
    assert lava_compat.patch_var_model_source(patched) == patched


# --------------------------------------------------------------------------- mapping


def big_graph(hidden: int, in_size: int = 8) -> Graph:
    """A quantized graph with one wide EGRU layer and a readout."""
    quant = EGRUQuant(QType(8, 6), QType(8, 6), STATE_Q, STATE_Q, STATE_Q, QType(24, 6))
    ones = np.full((1, 1), 2, np.int8)
    egru = EGRU(np.broadcast_to(ones, (in_size, 3 * hidden)), np.broadcast_to(ones, (hidden, 3 * hidden)),
                np.zeros(3 * hidden, np.int64), np.zeros(3 * hidden, np.int64), np.zeros(hidden, np.int64), quant=quant)
    readout = Linear(np.broadcast_to(ones, (10, hidden)), np.zeros(10, np.int64),
                     quant=LinearQuant(QType(8, 7), QType(24, 8), EVENT_Q, QType(24, 8)))
    return Graph(Input(in_size), (egru, readout), profile=LOIHI2.name)


def test_mapping_respects_per_core_limits():
    graph = big_graph(600)  # the recurrent Dense rows: 600 bytes per pre neuron, 218 per 128 KB core
    mapping = assign(build(graph))
    limits = ChipLimits()
    report = mapping.report()
    assert report["fits_one_chip"] and report["neurocores"] == len(mapping.cores) <= limits.neurocores_per_chip
    for core in mapping.cores:
        assert core.synaptic_bytes <= limits.synaptic_bytes_per_core
        assert core.neurons[1] - core.neurons[0] <= limits.neurons_per_core
        assert core.neuron_state_bytes <= limits.neuron_state_bytes_per_core
    pre_cores = [c for c in mapping.cores if c.population == "l0_pre"]
    assert len(pre_cores) == -(-4 * 600 // (limits.synaptic_bytes_per_core // (8 + 600 + 2 * 3)))
    assert report["chip_steps_per_input_step"] == D


def test_mapping_refuses_a_network_beyond_one_chip():
    with pytest.raises(MappingError, match=r"layer 0 \(l0_.*\): the network needs more than one chip's 128 neurocores"):
        assign(build(big_graph(3000)))


def test_mapping_refuses_excess_fan_in():
    with pytest.raises(MappingError, match=r"layer 0 \(l0_pre\): fan-in 4112 exceeds 4096"):
        assign(build(big_graph(8, in_size=4104)))


def test_report_lists_every_deployed_process_with_its_placement():
    graph, _ = random_loihi2_graph(2)
    net = build(graph)
    processes = assign(net).processes()
    placement = {p["name"]: p for p in processes}
    for pop in net.populations.values():
        if pop.kind in ("graded", "relu", "product"):
            assert placement[pop.name]["placement"] == "neurocore"
            assert placement[pop.name]["lava_class"].startswith("lava.proc.")
            assert placement[pop.name]["count"] == pop.size
    for c in net.connections:
        assert placement[c.name]["placement"] == "neurocore" and placement[c.name]["count"] == c.synapses
    hosts = {p["lava_class"] for p in processes if p["placement"] == "host"}
    assert hosts <= {"lava.proc.io.source.RingBuffer", "lava.proc.io.sink.RingBuffer",
                     "lava.proc.embedded_io.spike.PyToNxAdapter", "lava.proc.embedded_io.spike.NxToPyAdapter"}


# --------------------------------------------------------------------------- bundles, examples, CLI


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    from egru_deploy import data
    from egru_deploy.compile import compile_model, with_output_mode
    from egru_deploy.converters import load_model

    if not (EXAMPLES / "digits_egru.pt").is_file():
        pytest.skip("examples/digits_egru.pt not built yet")
    graph = with_output_mode(load_model(EXAMPLES / "digits_egru.pt"), "last")
    x_train, _ = data.load_split(EXAMPLES / "digits_train.npz")
    x_test, y_test = data.load_split(EXAMPLES / "digits_test.npz")
    out = tmp_path_factory.mktemp("bundles") / "digits"
    report = compile_model(graph, "loihi2", out, x_train, source="digits_egru.pt")
    return out, report, x_test, y_test


@needs_digits
def test_digits_bundle_artefacts(digits_bundle):
    out, report, _, _ = digits_bundle
    doc = json.loads((out / "loihi2" / "network.json").read_text())
    assert doc["schema_version"] == 2 and doc["steps_per_input_step"] == D
    classes = {p["lava_class"] for p in doc["populations"] if p["name"] not in ("input", "phase")}
    assert classes == {"lava.proc.graded.process.GradedVec", "lava.proc.graded.process.GradedReluVec",
                       "lava.proc.prodneuron.process.ProdNeuron"}
    conns = {c["name"]: c for c in doc["connections"]}
    dense_rec = conns["l0_events_to_l0_pre_a_in"]
    assert dense_rec["lava_class"] == "lava.proc.dense.process.Dense" and dense_rec["num_message_bits"] == 24
    graph = bundle.load_graph(out)
    net = build(graph)
    with np.load(out / "loihi2" / "weights.npz") as w:
        for c in net.connections:
            np.testing.assert_array_equal(w[f"{c.name}.values"], c.values)
            np.testing.assert_array_equal(w[f"{c.name}.rows"], c.rows)
    resources = json.loads((out / "loihi2" / "resources.json").read_text())
    assert resources["fits_one_chip"] and resources == report["resources"]
    on_chip = [p for p in resources["processes"] if p["placement"] == "neurocore"]
    assert {p["name"] for p in on_chip} >= {"l0_pre", "l0_relay", "l0_relu", "l0_prod", "l0_events", "l1_readout"}
    assert all(p["lava_class"].startswith("lava.proc.") for p in resources["processes"])
    assert resources["neurons_per_egru_unit"] == {"0": 21 + LOIHI2.activation.relus_per_unit}


@needs_digits
def test_digits_hwsim_equals_reference_on_test_set(digits_bundle):
    out, _, x_test, y_test = digits_bundle
    graph = bundle.load_graph(out)
    assert_same_result(hwsim.emulate(graph, x_test), reference.run_int(graph, x_test))


@needs_lava
@needs_digits
@pytest.mark.slow
def test_digits_lava_equals_hwsim(digits_bundle):
    from egru_deploy.targets.loihi2 import network

    out, _, x_test, _ = digits_bundle
    graph = bundle.load_graph(out)
    assert_same_chip_run(network.run(graph, x_test[:4]), hwsim.run(graph, x_test[:4]))


SHIPPED = ("fmnist_rows_egru.pt", "smnist_egru.pt", "brown_lm_egru.pt", "digits_egru_qat_loihi2.pt",
           "fmnist_rows_egru_qat_loihi2.pt", "smnist_egru_qat_loihi2.pt")
CROSS_CHECK_STEPS = 6  # Lava runs every chip step of these networks in Python: a few input steps each


@needs_lava
@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_example_lava_equals_hwsim(name):
    """Each shipped example's stock-process network, quantized on random inputs of its shape, run for a
    few input steps on Lava and in hwsim."""
    from egru_deploy import api, quantize
    from egru_deploy.targets.loihi2 import network

    if not (EXAMPLES / name).is_file():
        pytest.skip(f"examples/{name} not built")
    graph = api.load(EXAMPLES / name)
    rng = np.random.default_rng(0)
    if graph.input.tokens:
        x = rng.integers(0, graph.input.size, (4, CROSS_CHECK_STEPS))
    else:
        x = rng.random((4, CROSS_CHECK_STEPS, graph.input.size)).astype(np.float32)
    q = quantize.quantize(graph, LOIHI2, x)
    assert_same_chip_run(network.run(q, x[:1]), hwsim.run(q, x[:1]))


@needs_lava
@needs_digits
def test_emulate_cli_backends_agree(digits_bundle, tmp_path):
    from egru_deploy.cli import main

    out, _, x_test, _ = digits_bundle
    np.save(tmp_path / "x.npy", x_test[:2])
    outputs = {}
    for backend in ("reference", "hwsim", "lava"):
        result = CliRunner().invoke(main, ["emulate", str(out), "--input", str(tmp_path / "x.npy"),
                                           "--output", str(tmp_path / f"{backend}.npy"), "--backend", backend])
        assert result.exit_code == 0, result.output
        outputs[backend] = np.load(tmp_path / f"{backend}.npy")
    np.testing.assert_array_equal(outputs["hwsim"], outputs["reference"])
    np.testing.assert_array_equal(outputs["lava"], outputs["reference"])


def copy_bundle(src: Path, dst: Path, **manifest_changes) -> Path:
    import shutil

    shutil.copytree(src, dst)
    doc = json.loads((dst / bundle.BUNDLE_JSON).read_text())
    (dst / bundle.BUNDLE_JSON).write_text(json.dumps({**doc, **manifest_changes}))
    return dst


@needs_digits
def test_refuses_bundle_for_another_target_or_newer_schema(digits_bundle, tmp_path):
    from egru_deploy.hwsim.loihi2 import run_bundle as emulate_hwsim
    from egru_deploy.targets.loihi2.run import emulate_lava, run_on_board

    out, _, x_test, _ = digits_bundle
    other = copy_bundle(out, tmp_path / "other", target="spinnaker2")
    newer = copy_bundle(out, tmp_path / "newer", schema_version=bundle.BUNDLE_SCHEMA_VERSION + 1)
    for fn in (emulate_hwsim, emulate_lava, run_on_board):
        with pytest.raises(BundleError, match="compiled for target 'spinnaker2', not 'loihi2'"):
            fn(other, x_test[:1])
        with pytest.raises(BundleError, match="newer than this egru-deploy supports"):
            fn(newer, x_test[:1])


@needs_digits
def test_board_path_names_lava_loihi_when_absent(digits_bundle, tmp_path):
    from egru_deploy.cli import main
    from egru_deploy.targets.loihi2.run import run_on_board

    if LAVA_ERROR is None:
        from lava.utils import loihi

        if loihi.is_installed():
            pytest.skip("lava-loihi is installed here: the board path is exercised by hardware tests")
    out, _, x_test, _ = digits_bundle
    with pytest.raises(TargetUnavailable, match="lava-loihi") as excinfo:
        run_on_board(out, x_test[:1], board="ncl-og-01")
    assert "emulate BUNDLE --backend hwsim|lava" in str(excinfo.value) and "\n" not in str(excinfo.value)
    np.save(tmp_path / "x.npy", x_test[:1])
    result = CliRunner().invoke(main, ["run", str(out), "--target", "loihi2", "--board", "ncl-og-01",
                                       "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")])
    assert result.exit_code == 2 and "lava-loihi" in result.output and not (tmp_path / "y.npy").exists()


@pytest.mark.hardware
@pytest.mark.skipif(not os.environ.get("EGRU_DEPLOY_LOIHI_BOARD"), reason="EGRU_DEPLOY_LOIHI_BOARD not set")
@needs_digits
def test_board_run_equals_hwsim(digits_bundle):
    from egru_deploy.targets.loihi2.run import run_on_board

    out, _, x_test, _ = digits_bundle
    graph = bundle.load_graph(out)
    assert_same_result(run_on_board(out, x_test[:4], board=os.environ["EGRU_DEPLOY_LOIHI_BOARD"]),
                       hwsim.emulate(graph, x_test[:4]))


@needs_digits
def test_compile_refuses_a_model_the_circuit_cannot_hold(tmp_path):
    """z's constant is bias + recurrent bias: each fits the 24-bit state format, their sum not the phase lines."""
    from egru_deploy import api, ir
    from egru_deploy.cli import main

    graph = api.load(EXAMPLES / "digits_egru.pt", output_mode="last")
    layer = graph.layers[0]
    bias, recurrent_bias = layer.bias.copy(), layer.recurrent_bias.copy()
    bias[3], recurrent_bias[3] = 1500.0, 1500.0
    bad = graph.with_layers([replace(layer, bias=bias, recurrent_bias=recurrent_bias), *graph.layers[1:]])
    model = tmp_path / "bad-graph"
    ir.save(bad, model)
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "loihi2", "-o", str(out),
                                       "--calibration", str(EXAMPLES / "digits_train.npz")])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert "layer 0: constant" in message and "does not fit the 24-bit range" in message
    assert not out.exists()
