"""Golden files from the REAL EvNN kernel: tests/golden/evnn/<case>.npz + the checkpoint each benchmark saves.

Run with the scratch venv that scripts/build_evnn.sh builds (evnn-pytorch 0.2.0 from its PyPI sdist):

    bash scripts/build_evnn.sh && /tmp/evnn-venv/bin/python scripts/make_evnn_goldens.py

EvNN's benchmark model classes live only in its GitHub repository (benchmarks/, not in the sdist), so this
script re-declares each one below: same attribute names and registration order (hence the same
state_dict keys, in the same order), the same forward in eval mode, every EGRU a real
``evnn_pytorch.EGRU`` (outputs come from EvNN's own CPU kernel). Each class cites the source it mirrors;
docs/evnn_compat.md records the facts. The pre-0.2 version (``thr_reparam``, projection + ReLU) is not on
PyPI: its layer is a subclass of the 0.2.0 layer whose forward is the old one (thr = sigmoid(thr_reparam)
into the same kernel; lib/ is identical between the two versions), recorded as a reconstruction.

Weights are random but trained-like: scaled until every layer fires 10-60 % of the time, non-zero biases,
thresholds in (0, 1), and no pre-reset state within MIN_MARGIN of its threshold (so a float32
re-implementation cannot flip an event). Every EGRU layer's outputs are also checked here against a
float64 NumPy transcription of the kernel (lib/egru_forward_cpu.cc); the largest difference is stored.

Each <case>.npz holds: ``inputs`` (and ``inputs.*``), ``out.*`` (everything the model's forward
returns, eval mode), ``layer<i>.{y,c,o,trace}`` (per EGRU layer, as the layer returns them),
``meta`` (JSON string: hyper-parameters that are not in the state_dict, layouts, readout rule,
checkpoint wrapping, activity, provenance) and ``evnn_version``. Never edit the files by hand: change
this script and run it again.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread: the same BLAS summation order every run
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import evnn_pytorch as evnn
except ImportError:  # pragma: no cover - message for a wrong interpreter
    sys.exit("make_evnn_goldens.py: evnn_pytorch not importable; run it with the venv of scripts/build_evnn.sh "
             "(/tmp/evnn-venv/bin/python)")

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "evnn"
SDIST = Path(os.environ.get("EVNN_SCRATCH", "/tmp/evnn-build")) / "dl" / "evnn_pytorch-0.2.0.tar.gz"
SDIST_SHA256 = "10e72dff940b6c2786e7dc0828a72801bd52d32caaf71ada52773832fb6461da"  # PyPI evnn_pytorch-0.2.0.tar.gz

ESML = ("Efficient-Scalable-Machine-Learning/EvNN", "eaf293aaadec8a94700da38466798e00905afe5f")  # tag v0.2.0
PK = ("pascalkuthe/EvNN", "1c491617e41ae9bd4b647cfa006d7576003e70b7")  # main, pre-0.2 (thr_reparam)
MIN_MARGIN = 1e-4
ACTIVITY = (0.10, 0.60)
TRACE_DECAY = 0.9  # lib/inline_ops.h trace(tr, h, 0.9) as called in lib/egru_forward_cpu.cc
DVS_CLASSES = 11  # len(tonic.datasets.DVSGesture.classes)
DVS_SENSOR = (128, 128, 2)  # tonic.datasets.DVSGesture.sensor_size
DVS_DATA_MAX_TRAIN = 19.0  # benchmarks/dvs_gesture/utils.py get_dvs128_train_val: x / data_max ('mean', 'none')
REAL_CNN_CHANNELS = (64, 192, 384, 256, 256, 512)


def src(repo_commit, path: str, what: str) -> dict:
    return {"repo": repo_commit[0], "commit": repo_commit[1], "path": path, "what": what}


# ============================================================================ pre-0.2 layer (reconstruction)

class EGRUThrReparam(evnn.EGRU):
    """The pre-0.2 EvNN layer (pascalkuthe/EvNN@1c49161 frameworks/pytorch/egru.py): parameter ``thr_reparam``
    instead of ``thr``, ``thr = torch.sigmoid(self.thr_reparam)`` at every forward, no clamp. Everything else
    (constructor order, kernel, lib/) is the 0.2.0 code, which is identical there."""

    def __init__(self, *args, thr_mean: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)  # registers thr last; the old code registers thr_reparam last
        del self.thr
        self.thr_reparam = nn.Parameter(torch.normal(torch.zeros(self.hidden_size) + thr_mean,
                                                     math.sqrt(2) * torch.ones(self.hidden_size)))
        self.thr = torch.sigmoid(self.thr_reparam)  # a plain attribute (not in the state_dict), as in the old code

    def forward(self, input, state=None, lengths=None):  # the old forward, line for line
        input = self._permute(input)
        state_shape = [1, input.shape[1], self.hidden_size]
        h0 = self._get_state(input, state, state_shape)
        thr = torch.sigmoid(self.thr_reparam)
        y, h, o, trace = self._impl(input, h0[0], thr, self._get_zoneout_mask(input))
        output = self._permute(y[1:])
        h = self._permute(h[1:])
        o = self._permute(o[1:])
        trace = self._permute(trace[1:])
        return output, (h, o, trace)


# ============================================================================ eval-mode helpers of the benchmarks

class VariationalDropout(nn.Module):
    """benchmarks/lm/modules.py (= benchmarks/egru/reg_modules.py): identity unless training."""

    def forward(self, x, dropout=0.5):
        if not self.training or not dropout:
            return x
        m = x.data.new(1, x.size(1), x.size(2)).bernoulli_(1 - dropout)
        return m.div_(1 - dropout).expand_as(x) * x


def embedded_dropout(embed, words, dropout=0.1):
    """benchmarks/lm/embedding_dropout.py with scale=None; at eval dropout=0: a plain embedding lookup."""
    if dropout:
        mask = embed.weight.data.new().resize_((embed.weight.size(0), 1)).bernoulli_(1 - dropout).expand_as(
            embed.weight) / (1 - dropout)
        weight = mask * embed.weight
    else:
        weight = embed.weight
    padding_idx = embed.padding_idx if embed.padding_idx is not None else -1
    return F.embedding(words, weight, padding_idx, embed.max_norm, embed.norm_type, embed.scale_grad_by_freq,
                       embed.sparse)


# ============================================================================ language model (benchmarks/lm/models.py)

class Decoder(nn.Module):
    """benchmarks/lm/models.py Decoder. v0.2.0: projection WITHOUT ReLU; pre-0.2 (``old=True``):
    ``F.relu(self.projection(x))`` then variational dropout (identity at eval)."""

    def __init__(self, ninp, ntokens, project=False, nemb=None, dropout=0.0, old=False):
        super().__init__()
        if project:
            assert nemb, "If projection is True, must specify nemb!"
        self.ninp, self.nemb, self.nout = ninp, nemb if nemb else ninp, ntokens
        self.dropout, self.old = dropout, old
        self.variational_dropout = VariationalDropout()
        self.project = project
        self.projection = nn.Linear(ninp, nemb) if project else nn.Identity()
        self.decoder = nn.Linear(self.nemb, self.nout)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x):
        bs, seq_len, ninp = x.shape
        if self.project:
            x = x.view(-1, ninp)
            x = F.relu(self.projection(x)) if self.old else self.projection(x)
            x = x.view(bs, seq_len, self.nemb)
            if self.old:
                x = self.variational_dropout(x, self.dropout)
        x = x.view(-1, self.nemb)
        return self.decoder(x)


class LanguageModel(nn.Module):
    """benchmarks/lm/models.py LanguageModel, rnn_type='egru' (both versions; ``old`` picks the pre-0.2 layer
    and decoder). Returns ``(log_softmax(decoded, dim=1), new_states, raw_hiddens, dropped_hiddens)``."""

    def __init__(self, rnn_type, nlayers, emb_dim, hidden_dim, vocab_size, projection, dropout_words,
                 dropout_embedding, dropout_connect, dropout_forward, alpha, beta, gamma, old=False, **kwargs):
        super().__init__()
        assert rnn_type == "egru"
        self.nlayers, self.emb_dim, self.hidden_dim, self.vocab_size = nlayers, emb_dim, hidden_dim, vocab_size
        self.projection = projection
        self.dropout_words, self.dropout_embedding = dropout_words, dropout_embedding
        self.dropout_connect, self.dropout_forward = dropout_connect, dropout_forward
        self.alpha, self.beta, self.gamma, self.ar_loss = alpha, beta, gamma, 0
        self.variational_dropout = VariationalDropout()
        self.embeddings = nn.Embedding(vocab_size, emb_dim)
        nn.init.uniform_(self.embeddings.weight, -0.1, 0.1)
        self.decoder = Decoder(ninp=hidden_dim if projection else emb_dim, ntokens=vocab_size, project=projection,
                               nemb=emb_dim, dropout=dropout_forward, old=old)
        self.decoder.decoder.weight = self.embeddings.weight  # tied
        self.rnn_type = rnn_type
        layer = EGRUThrReparam if old else evnn.EGRU
        self.rnns = nn.ModuleList([
            layer(input_size=emb_dim if l == 0 else hidden_dim,
                  hidden_size=emb_dim if l == nlayers - 1 and not projection else hidden_dim,
                  batch_first=True, dropout=dropout_connect, zoneout=0.0, return_state_sequence=False,
                  use_custom_cuda=True, **kwargs) for l in range(nlayers)])
        self.record = []  # not in the original: per-layer (c, o, trace) of the last call, for the golden

    def init_hidden(self, batch_size):
        return [None for _ in self.rnns]

    def forward(self, inputs, state):
        embedded = embedded_dropout(self.embeddings, inputs, dropout=self.dropout_words if self.training else 0)
        embedded = self.variational_dropout(embedded, dropout=self.dropout_embedding)
        new_states, raw_hiddens, dropped_hiddens = [], [], []
        self.record = []
        hiddens = embedded
        for l, rnn in enumerate(self.rnns):
            hiddens, final_states = rnn(hiddens, state[l])
            raw_hiddens.append(hiddens)
            self.record.append(final_states)  # (c, o, tr); the original feeds them to its regularisers
            final_states = torch.unsqueeze(hiddens[:, -1], dim=0)  # only the last event y goes on
            new_states.append(final_states)
            if l != self.nlayers - 1:
                hiddens = self.variational_dropout(hiddens, dropout=self.dropout_forward)
                dropped_hiddens.append(hiddens)
        hiddens_ = self.variational_dropout(hiddens.contiguous())
        dropped_hiddens.append(hiddens_)
        decoded = self.decoder(hiddens_)
        return F.log_softmax(decoded, dim=1), new_states, raw_hiddens, dropped_hiddens


# ============================================================================ DVS gesture (dvs_gesture/models.py)

class MergeEvents:
    """benchmarks/dvs_gesture/utils.py MergeEvents."""

    def __init__(self, method="mean", flatten=True):
        assert method in ["mean", "diff", "bool", "none"]
        self.method, self.flatten = method, flatten

    def __call__(self, data):
        if self.method == "mean":
            data = torch.mean(data.type(torch.float), dim=1)
        elif self.method == "diff":
            data = data[:, 0, ...] - data[:, 1, ...]
        elif self.method == "bool":
            data = torch.where(data > 1, 1, 0)
        return data.reshape((data.size(0), -1)) if self.flatten else data


class EGRUDDVSOptimizedModel(nn.Module):
    """benchmarks/dvs_gesture/models.py: EGRUDDVSModel.__init__ (rnn_type egru) + EGRUDDVSOptimizedModel.forward
    (the class dvs128.py trains: get_model(opt, device, optimized=True)). ``cnn_channels`` (not in the
    original) only shrinks the hard-coded CNN widths (64, 192, 384, 256, 256 -> Linear 512) so the golden
    stays small; layer kinds, kernels, strides, paddings, pools and module indices are the original's."""

    def __init__(self, input_size, n_units, unit_size, opt, cnn_channels=REAL_CNN_CHANNELS):
        super().__init__()
        self.input_size = input_size[1] * input_size[0]
        self.n_units, self.unit_size = n_units, unit_size
        self.use_all_timesteps = opt.use_all_timesteps
        self.input_maxpool = nn.MaxPool2d(kernel_size=128 // opt.frame_size)
        self.input_size = self.input_size // ((128 // opt.frame_size) ** 2)
        self.event_merger = MergeEvents(method=opt.event_agg_method, flatten=opt.flatten_frame)
        channels = 1 if opt.event_agg_method in ("mean", "diff") else 2
        self.use_cnn = opt.use_cnn
        if self.use_cnn:
            assert not opt.flatten_frame, "Cannot use cnn after flatten"
            c1, c2, c3, c4, c5, lin = cnn_channels
            self.conv = nn.Sequential(nn.Conv2d(channels, c1, kernel_size=11, stride=4, padding=2),
                                      nn.ReLU(inplace=True),
                                      nn.MaxPool2d(kernel_size=3, stride=2),
                                      nn.Conv2d(c1, c2, kernel_size=5, padding=2),
                                      nn.ReLU(inplace=True),
                                      nn.MaxPool2d(kernel_size=3, stride=2),
                                      nn.Conv2d(c2, c3, kernel_size=3, padding=1),
                                      nn.ReLU(inplace=True),
                                      nn.MaxPool2d(kernel_size=3, stride=2) if opt.frame_size >= 64 else nn.Identity(),
                                      nn.Conv2d(c3, c4, kernel_size=3, padding=1),
                                      nn.ReLU(inplace=True),
                                      nn.MaxPool2d(kernel_size=3, stride=2) if opt.frame_size >= 128 else nn.Identity(),
                                      nn.Conv2d(c4, c5, kernel_size=3, padding=1),
                                      nn.ReLU(inplace=True),
                                      nn.Flatten(),
                                      nn.Linear(c5, lin))
            self.conv = torch.jit.script(self.conv)
            self.input_size = lin
        else:
            self.conv = None
            self.input_size *= channels
        self.hidden_dim = self.n_units * self.unit_size
        layer_input_size = [self.input_size] + [self.hidden_dim for _ in range(opt.num_layers - 1)]
        self.layers = nn.ModuleList([
            evnn.EGRU(layer_input_size[i], self.n_units, dropout=opt.dropconnect, zoneout=opt.zoneout,
                      pseudo_derivative_support=opt.pseudo_derivative_width, thr_mean=opt.threshold_mean,
                      batch_first=True) for i in range(opt.num_layers)])
        self.dropout_layers = nn.ModuleList([nn.Dropout(opt.dropout) for _ in range(opt.num_layers + 1)]) \
            if opt.dropout else None
        self.fc = nn.Linear(self.hidden_dim, DVS_CLASSES)
        self.record = []  # not in the original: per-layer (y, c, o, trace)

    def init_hidden(self, batch_size, device):
        return None

    def forward(self, inputs, state):
        seq_len, batch_size = inputs.size(1), inputs.size(0)
        hidden_states, output_gate_vals = [], []
        self.record = []
        inp = inputs.contiguous().view((batch_size * seq_len,) + inputs.size()[2:])
        inp = self.input_maxpool(inp)
        inp = self.event_merger(inp)
        if self.use_cnn:
            inp = self.conv(torch.unsqueeze(inp, 1))
        cur_layer_input = inp.contiguous().view((batch_size, seq_len) + inp.size()[1:])
        if self.dropout_layers:
            cur_layer_input = self.dropout_layers[0](cur_layer_input)
        for layer_idx, rnn in enumerate(self.layers):
            output, state = rnn(cur_layer_input, None)
            c_, o_, tr_ = state
            self.record.append((output, c_, o_, tr_))
            output = tr_  # the TRACE goes on, to the next layer and to the readout
            output_gate_vals.append(o_.unsqueeze(0))
            hidden_states.append(c_.unsqueeze(0))
            cur_layer_input = output
            if self.dropout_layers:
                cur_layer_input = self.dropout_layers[layer_idx + 1](cur_layer_input)
        lstm_out = cur_layer_input
        output_gate = torch.concat(output_gate_vals).permute(2, 0, 1, 3)  # (batch, layer, time, hidden)
        hidden_states = torch.concat(hidden_states).permute(2, 0, 1, 3)
        if not self.use_all_timesteps:
            logits = linear_out = self.fc(lstm_out[:, -1, :])
        else:
            linear_out = self.fc(lstm_out)
            logits = torch.mean(linear_out, dim=1)
        return logits, hidden_states, output_gate, linear_out


# ============================================================================ sMNIST (egru/models.py, smnist.py)

class RNNWrapper(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.hidden_size = rnn.hidden_size

    def forward(self, all_inputs):
        rnn_out, *hidden = self.rnn(all_inputs)
        return rnn_out, hidden


class RNNReadoutWrapper(nn.Module):
    def __init__(self, rnn, output_size: int):
        super().__init__()
        self.rnn = rnn
        self.output_size = output_size
        self.hidden2out = nn.Linear(self.rnn.hidden_size, self.output_size)

    def forward(self, all_inputs):
        rnn_out, hidden = self.rnn(all_inputs)
        return rnn_out, *hidden


class RNNMultiLayerWrapper(nn.Module):
    def __init__(self, rnns, dropout_forward=0.):
        super().__init__()
        self.rnns = nn.ModuleList(rnns)
        self.n_rnns = len(rnns)
        self.hidden_size = rnns[-1].hidden_size
        self.dropout_forward = dropout_forward
        self.variational_dropout = VariationalDropout()
        self.record = []  # not in the original: per-layer (y, (c, o, trace))

    def forward(self, ext_inputs):
        inputs = ext_inputs
        self.record = []
        if self.n_rnns == 1:
            rnn_out, states = self.rnns[0](inputs)
            self.record.append((rnn_out, states[0]))
        else:
            for model in self.rnns:
                rnn_out, states = model(inputs)
                self.record.append((rnn_out, states[0]))
                rnn_out = self.variational_dropout(rnn_out, dropout=self.dropout_forward)
                inputs = rnn_out
        return rnn_out, states


def smnist_model(c) -> RNNReadoutWrapper:
    """benchmarks/smnist/smnist.py main() + get_rnn() for rnn_type egru."""
    layers = []
    for l in range(c.n_layers):
        rnn = evnn.EGRU(1 if l == 0 else c.n_units, c.n_units, dropout=c.dropout_connect, zoneout=c.zoneout,
                        batch_first=True, use_custom_cuda=True)
        if c.use_grad_clipping:
            rnn.grad_clip_norm(enable=True, norm=c.grad_clip_norm)
        layers.append(RNNWrapper(rnn))
    return RNNReadoutWrapper(RNNMultiLayerWrapper(layers, dropout_forward=c.dropout_forward), output_size=10)


def smnist_eval(model, inputs, c):
    """smnist.py eval_batch: the readout is applied outside the model, to the last time step."""
    rnn_out, states = model(inputs)
    c_vals, o_vals, tr_vals = states
    seq = model.hidden2out(tr_vals if c.use_output_trace else rnn_out)
    return rnn_out, states, seq, seq[:, -1, :]


# ============================================================================ stacked layers (no benchmark class)

class StackedEGRU(nn.Module):
    """A ModuleList ``rnns`` of evnn.EGRU, each layer's event output y into the next (LanguageModel.rnns
    without embedding or decoder); zero initial state; time-major like evnn.EGRU's default."""

    def __init__(self, sizes, **kwargs):
        super().__init__()
        self.rnns = nn.ModuleList(evnn.EGRU(sizes[i], sizes[i + 1], **kwargs) for i in range(len(sizes) - 1))
        self.record = []

    def forward(self, x):
        self.record = []
        for rnn in self.rnns:
            x, states = rnn(x)
            self.record.append((x, *states))
        return x


# ============================================================================ weights, checks, writing

def egru_layers(model):
    return [m for m in model.modules() if isinstance(m, evnn.EGRU)]


def fill_trained_like(model, rng, gain: float, rgain: float = 0.8):
    """Random weights with EvNN's shapes: input kernel scaled by ``gain`` / sqrt(fan-in), recurrent kernel
    by ``rgain`` / sqrt(H), non-zero biases, thresholds U(0.1, 0.6). Other modules: small random values."""
    with torch.no_grad():
        for layer in egru_layers(model):
            i, h = layer.input_size, layer.hidden_size
            layer.kernel.copy_(torch.from_numpy(rng.normal(0, gain / math.sqrt(i), (i, 3 * h))))
            layer.recurrent_kernel.copy_(torch.from_numpy(rng.normal(0, rgain / math.sqrt(h), (h, 3 * h))))
            layer.bias.copy_(torch.from_numpy(rng.normal(0, 0.3, 3 * h)))
            layer.recurrent_bias.copy_(torch.from_numpy(rng.normal(0, 0.3, 3 * h)))
            thr = rng.uniform(0.1, 0.6, h)
            if isinstance(layer, EGRUThrReparam):
                layer.thr_reparam.copy_(torch.from_numpy(np.log(thr / (1 - thr))))  # logit: sigmoid gives thr
            else:
                layer.thr.copy_(torch.from_numpy(thr))
        egru_params = {id(p) for layer in egru_layers(model) for p in layer.parameters()}
        # named_parameters, not modules: the DVS CNN is torch.jit.script'ed (its submodules are no nn.Conv2d)
        for name, p in model.named_parameters():  # a tied tensor comes once, under its first name
            if id(p) in egru_params:
                continue
            if name.endswith("embeddings.weight"):
                p.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, p.shape)))
            elif name.endswith("weight") and p.dim() >= 2:
                p.copy_(torch.from_numpy(rng.normal(0, 1.5 / math.sqrt(p[0].numel()), p.shape)))
            elif name.endswith("bias"):
                p.copy_(torch.from_numpy(rng.normal(0, 0.1, p.shape)))
            else:
                raise ValueError(f"fill_trained_like: no rule for {name}")


def layer_stats(ys, cs, os_, thrs):
    """Activity (share of non-zero y) and the smallest |c' - thr| (c' = pre-reset state = c + o * thr)."""
    act, margin = [], math.inf
    for y, c, o, thr in zip(ys, cs, os_, thrs):
        act.append(float((y != 0).float().mean()))
        pre = c + o * thr
        margin = min(margin, float((pre - thr).abs().min().detach()))
    return act, margin


def numpy_kernel(x, layer, thr, zoneout: float, y0=None):
    """Float64 transcription of lib/egru_forward_cpu.cc PointwiseOperations (eval mode), time-major x."""
    x = x.astype(np.float64)
    w, r = layer.kernel.detach().double().numpy(), layer.recurrent_kernel.detach().double().numpy()
    bx, br = layer.bias.detach().double().numpy(), layer.recurrent_bias.detach().double().numpy()
    thr = thr.astype(np.float64)
    t_steps, batch, _ = x.shape
    hh = r.shape[0]
    c = np.zeros((batch, hh))
    y = np.zeros((batch, hh)) if y0 is None else y0.astype(np.float64)
    tr = np.zeros((batch, hh))
    out = {k: [] for k in ("y", "c", "o", "trace")}
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    for t in range(t_steps):
        wx, rh = x[t] @ w, y @ r
        z = sig(wx[:, :hh] + rh[:, :hh] + bx[:hh] + br[:hh])
        rr = sig(wx[:, hh:2 * hh] + rh[:, hh:2 * hh] + bx[hh:2 * hh] + br[hh:2 * hh])
        g = np.tanh(wx[:, 2 * hh:] + rr * (rh[:, 2 * hh:] + br[2 * hh:]) + bx[2 * hh:])
        cur = z * c + (1 - z) * g
        if zoneout:
            cur = zoneout * c + (1 - zoneout) * cur
        o = (cur - thr > 0).astype(np.float64)
        c = cur - o * thr
        y = cur * o
        tr = TRACE_DECAY * tr + (1 - TRACE_DECAY) * y
        for k, v in zip(("y", "c", "o", "trace"), (y, c, o, tr)):
            out[k].append(v)
    return {k: np.stack(v) for k, v in out.items()}


def check_against_numpy(layer, x_in, y, c, o, tr, batch_first: bool, y0=None) -> float:
    """Largest |EvNN - float64 NumPy kernel| over y, c, o, trace of one layer (time-major comparison)."""
    tm = (lambda a: a.detach().numpy().transpose(1, 0, 2)) if batch_first else (lambda a: a.detach().numpy())
    thr = (torch.sigmoid(layer.thr_reparam) if isinstance(layer, EGRUThrReparam) else layer.thr).detach().numpy()
    ref = numpy_kernel(tm(x_in), layer, thr, float(layer.zoneout),
                       None if y0 is None else y0.detach().numpy()[0])
    return max(float(np.abs(ref[k] - tm(v)).max()) for k, v in zip(("y", "c", "o", "trace"), (y, c, o, tr)))


def layer_thr(layer) -> torch.Tensor:
    return torch.sigmoid(layer.thr_reparam) if isinstance(layer, EGRUThrReparam) else layer.thr


def npy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def write_case(name: str, arrays: dict, meta: dict, checkpoint, checkpoint_ext: str, out_dir: Path) -> dict:
    ckpt_path = out_dir / f"{name}.{checkpoint_ext}"
    torch.save(checkpoint, ckpt_path)
    meta = dict(meta, case=name, evnn_version=evnn.__version__, torch_version=torch.__version__,
                checkpoint_file=ckpt_path.name, generator="scripts/make_evnn_goldens.py",
                evnn_sdist_sha256=_sdist_sha256())
    payload = {k: npy(v) for k, v in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta, indent=1, sort_keys=True))
    payload["evnn_version"] = np.array(evnn.__version__)
    npz_path = out_dir / f"{name}.npz"
    np.savez_compressed(npz_path, **payload)
    return {"case": name, "npz_bytes": npz_path.stat().st_size, "checkpoint_bytes": ckpt_path.stat().st_size,
            "activity": meta.get("activity"), "min_margin": meta.get("min_margin"),
            "numpy_kernel_max_abs_diff": meta.get("numpy_kernel_max_abs_diff")}


def _sdist_sha256():
    """The sdist's hash, checked against the build's download when it is at hand."""
    if SDIST.is_file():
        actual = hashlib.sha256(SDIST.read_bytes()).hexdigest()
        if actual != SDIST_SHA256:
            sys.exit(f"make_evnn_goldens.py: {SDIST} has sha256 {actual}, expected {SDIST_SHA256}")
    return SDIST_SHA256


def tune(build, run, seeds=range(100), gains=(0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0, 4.0), target=0.3):
    """For the first seed with a fitting gain: the gain whose EvNN run has every layer's activity in ACTIVITY,
    margin >= MIN_MARGIN, and mean activity closest to ``target``.
    ``build(rng, gain) -> model``; ``run(model) -> (result, ys, cs, os, thrs)``."""
    for seed in seeds:
        best = None
        for gain in gains:
            rng = np.random.default_rng(seed)
            torch.manual_seed(seed)
            model = build(rng, gain)
            result = run(model)
            act, margin = layer_stats(*result[1:])
            if all(ACTIVITY[0] <= a <= ACTIVITY[1] for a in act) and margin >= MIN_MARGIN:
                score = abs(float(np.mean(act)) - target)
                if best is None or score < best[0]:
                    best = (score, model, result[0], act, margin, seed, gain)
        if best is not None:
            return best[1:]
    raise RuntimeError("no well-conditioned draw found")


# ============================================================================ cases

B, T = 3, 12


def case_layer(out_dir):
    """Bare evnn.EGRU(12, 16), time-major (batch_first=False, the default); also a run with an initial y."""
    i, h = 12, 16
    x = torch.from_numpy(np.random.default_rng(100).normal(0, 1, (T, B, i)).astype(np.float32))

    def build(rng, gain):
        layer = evnn.EGRU(i, h)
        fill_trained_like(layer, rng, gain)
        return layer.eval()

    def run(layer):
        with torch.no_grad():
            y, (c, o, tr) = layer(x)
        return (y, c, o, tr), [y], [c], [o], [layer.thr]

    layer, (y, c, o, tr), act, margin, seed, gain = tune(build, run)
    ckpt = copy.deepcopy(layer.state_dict())
    y0 = torch.from_numpy(np.random.default_rng(101).uniform(0.2, 0.9, (1, B, h)).astype(np.float32))
    y0[torch.from_numpy(np.random.default_rng(102).uniform(size=(1, B, h)) < 0.6)] = 0.0
    with torch.no_grad():
        y1, (c1, o1, tr1) = layer(x, y0)
    _, margin1 = layer_stats([y1], [c1], [o1], [layer.thr])
    diff = max(check_against_numpy(layer, x, y, c, o, tr, False),
               check_against_numpy(layer, x, y1, c1, o1, tr1, False, y0=y0))
    meta = dict(kind="egru_layer", source=src(ESML, "frameworks/pytorch/egru.py", "class EGRU"),
                hyper=dict(input_size=i, hidden_size=h, batch_first=False, zoneout=0.0, dropout=0.0),
                layout="time-major: inputs (T, B, I); out.* and layer0.* (T, B, H); inputs.y0 (1, B, H)",
                forward="y, (c, o, trace) = EGRU(x)  and, for with_y0.*, EGRU(x, y0): y0 is the initial EVENT "
                        "output y_{-1}; the internal state c and the trace still start at 0",
                checkpoint_wrapping="bare layer state_dict (no benchmark script; torch.save(layer.state_dict()))",
                activity=act, min_margin=min(margin, margin1), seed=seed, gain=gain,
                numpy_kernel_max_abs_diff=diff)
    arrays = {"inputs": x, "inputs.y0": y0, "out.y": y, "out.c": c, "out.o": o, "out.trace": tr,
              "layer0.y": y, "layer0.c": c, "layer0.o": o, "layer0.trace": tr,
              "with_y0.y": y1, "with_y0.c": c1, "with_y0.o": o1, "with_y0.trace": tr1}
    return write_case("egru_layer", arrays, meta, ckpt, "pt", out_dir)


def case_layer_thr_clamp(out_dir):
    """A layer whose stored thr lies partly outside [0, 1]: EvNN clamps it in place at forward."""
    i, h = 6, 8
    x = torch.from_numpy(np.random.default_rng(110).normal(0, 1, (T, B, i)).astype(np.float32))

    def build(rng, gain):
        layer = evnn.EGRU(i, h)
        fill_trained_like(layer, rng, gain)
        with torch.no_grad():
            layer.thr[0], layer.thr[1] = 1.3, -0.2
        return layer.eval()

    def run(layer):
        saved = layer.thr.detach().clone()
        with torch.no_grad():
            y, (c, o, tr) = copy.deepcopy(layer)(x)
        return (y, c, o, tr), [y], [c], [o], [saved.clamp(0, 1)]

    layer, (y, c, o, tr), act, margin, seed, gain = tune(build, run, gains=(1.0, 1.3, 1.7, 2.2, 3.0, 4.0))
    ckpt = copy.deepcopy(layer.state_dict())  # saved BEFORE any forward: thr still holds 1.3 and -0.2
    stored_thr = layer.thr.detach().clone()
    with torch.no_grad():
        y, (c, o, tr) = layer(x)
    meta = dict(kind="egru_layer_thr_clamp", source=src(ESML, "frameworks/pytorch/egru.py",
                                                        "EGRU.forward: self.thr.data.clamp_(min=0.0, max=1.0)"),
                hyper=dict(input_size=i, hidden_size=h, batch_first=False, zoneout=0.0),
                layout="time-major: inputs (T, B, I); out.* (T, B, H)",
                note="checkpoint thr[0]=1.3, thr[1]=-0.2; EvNN 0.2.0 clamps thr to [0, 1] in place before the "
                     "kernel (the layer's own parameter changes). Real checkpoints are saved after an evaluation "
                     "forward, so they normally hold thr already clamped.",
                activity=act, min_margin=margin, seed=seed, gain=gain,
                numpy_kernel_max_abs_diff=check_against_numpy(layer, x, y, c, o, tr, False))
    arrays = {"inputs": x, "out.y": y, "out.c": c, "out.o": o, "out.trace": tr, "stored_thr": stored_thr,
              "clamped_thr": layer.thr.detach()}
    return write_case("egru_layer_thr_clamp", arrays, meta, ckpt, "pt", out_dir)


def case_zoneout(out_dir):
    """evnn.EGRU(10, 16, zoneout=0.25) in eval mode: the kernel blends c' = p * c_prev + (1 - p) * c_new."""
    i, h, p = 10, 16, 0.25
    x = torch.from_numpy(np.random.default_rng(120).normal(0, 1, (T, B, i)).astype(np.float32))

    def build(rng, gain):
        layer = evnn.EGRU(i, h, zoneout=p)
        fill_trained_like(layer, rng, gain)
        return layer.eval()

    def run(layer):
        with torch.no_grad():
            y, (c, o, tr) = layer(x)
        return (y, c, o, tr), [y], [c], [o], [layer.thr]

    layer, (y, c, o, tr), act, margin, seed, gain = tune(build, run)
    ckpt = copy.deepcopy(layer.state_dict())
    no_zo = copy.deepcopy(layer)
    no_zo.zoneout = 0.0
    script = copy.deepcopy(layer)
    script.use_custom_cuda = False  # the pure-PyTorch EGRUScript path
    with torch.no_grad():
        y_nz = no_zo(x)[0]
        y_script = script(x)[0]
    meta = dict(kind="egru_zoneout_eval", source=src(ESML, "lib/egru_forward_cpu.cc",
                                                     "PointwiseOperations<T, Training=false, ApplyZoneout=true>"),
                hyper=dict(input_size=i, hidden_size=h, batch_first=False, zoneout=p),
                layout="time-major: inputs (T, B, I); out.* (T, B, H)",
                rule="eval: c' = z*c + (1-z)*g; c' = p*c + (1-p)*c'  (c = post-reset state of the previous step); "
                     "then o = H(c' - thr), c = c' - o*thr, y = o*c'. zoneout p is NOT in the state_dict.",
                contrast={"contrast.y_without_zoneout": "same weights, zoneout=0",
                          "contrast.y_egruscript": "same weights through EvNN's pure-PyTorch fallback "
                                                   "(use_custom_cuda=False), whose eval branch computes "
                                                   "p*h[t] + (1-p)*h[t] = h[t]: the state never moves (a bug)"},
                activity=act, min_margin=margin, seed=seed, gain=gain,
                numpy_kernel_max_abs_diff=check_against_numpy(layer, x, y, c, o, tr, False))
    arrays = {"inputs": x, "out.y": y, "out.c": c, "out.o": o, "out.trace": tr,
              "contrast.y_without_zoneout": y_nz, "contrast.y_egruscript": y_script}
    return write_case("egru_zoneout_eval", arrays, meta, ckpt, "pt", out_dir)


def case_stacked(out_dir):
    sizes = [8, 16, 12, 16]
    x = torch.from_numpy(np.random.default_rng(130).normal(0, 1, (T, B, sizes[0])).astype(np.float32))

    def build(rng, gain):
        model = StackedEGRU(sizes)
        fill_trained_like(model, rng, gain)
        return model.eval()

    def run(model):
        with torch.no_grad():
            out = model(x)
        rec = model.record
        return out, [r[0] for r in rec], [r[1] for r in rec], [r[2] for r in rec], [l.thr for l in model.rnns]

    model, out, act, margin, seed, gain = tune(build, run)
    inputs = [x] + [r[0] for r in model.record[:-1]]
    diff = max(check_against_numpy(l, xi, *r, False) for l, xi, r in zip(model.rnns, inputs, model.record))
    arrays = {"inputs": x, "out.y": out}
    for k, (y, c, o, tr) in enumerate(model.record):
        arrays.update({f"layer{k}.y": y, f"layer{k}.c": c, f"layer{k}.o": o, f"layer{k}.trace": tr})
    meta = dict(kind="egru_stacked", source=src(ESML, "frameworks/pytorch/egru.py", "class EGRU (stacked)"),
                hyper=dict(sizes=sizes, batch_first=False, zoneout=0.0, use_trace=False),
                layout="time-major: inputs (T, B, I); out.y = last layer's y (T, B, H); layer<k>.* (T, B, H_k)",
                feed="each layer's event output y (not the trace) is the next layer's input; no readout",
                checkpoint_wrapping="bare state_dict of nn.ModuleList 'rnns' (rnns.<k>.*), "
                                    "torch.save(model.state_dict())",
                activity=act, min_margin=margin, seed=seed, gain=gain, numpy_kernel_max_abs_diff=diff)
    return write_case("egru_stacked", arrays, meta, copy.deepcopy(model.state_dict()), "pt", out_dir)


LM_ARGS = dict(rnn_type="egru", nlayers=2, emb_dim=8, hidden_dim=12, vocab_size=16, dropout_words=0.1,
               dropout_embedding=0.4, dropout_connect=0.5, dropout_forward=0.3, alpha=0, beta=0, gamma=0)


def _lm_build(projection: bool, old: bool):
    def build(rng, gain):
        if old:  # pascalkuthe/EvNN benchmarks/lm/train.py: damp_factor, pseudo_derivative_width, grad_clip, thr_mean
            extra = dict(dampening_factor=0.7, pseudo_derivative_support=1.0, grad_clip=2.0, thr_mean=-2.0)
        else:  # benchmarks/lm/train.py (v0.2.0): dampening_factor = pseudo_derivative_support
            #      = --pseudo_derivative_width
            extra = dict(dampening_factor=3.6, pseudo_derivative_support=3.6, grad_clip=0.1, thr_mean=0.01,
                         weight_initialization_gain=1.0)
        model = LanguageModel(**LM_ARGS, projection=projection, old=old, **extra)
        fill_trained_like(model, rng, gain)
        return model.eval()
    return build


def _lm_run(tokens):
    def run(model):
        with torch.no_grad():
            result = model(tokens, model.init_hidden(tokens.shape[0]))
        ys = result[2]
        return result, ys, [r[0] for r in model.record], [r[1] for r in model.record], \
            [layer_thr(l) for l in model.rnns]
    return run


def _lm_arrays(model, tokens, result, prefix=""):
    logp, new_states, raw, dropped = result
    arrays = {f"{prefix}out.log_probs": logp}
    for k, s in enumerate(new_states):
        arrays[f"{prefix}out.new_states.{k}"] = s
    for k, (y, (c, o, tr)) in enumerate(zip(raw, model.record)):
        arrays.update({f"{prefix}layer{k}.y": y, f"{prefix}layer{k}.c": c, f"{prefix}layer{k}.o": o,
                       f"{prefix}layer{k}.trace": tr})
    return arrays


def _lm_diff(model, tokens, state=None):
    x = model.embeddings(tokens)
    diff = 0.0
    for k, rnn in enumerate(model.rnns):
        y0 = None if state is None or state[k] is None else state[k]
        with torch.no_grad():
            y, (c, o, tr) = rnn(x, y0)
        diff = max(diff, check_against_numpy(rnn, x, y, c, o, tr, True, y0=y0))
        x = y
    return diff


LM_OUTPUTS = ("log_softmax(decoder(h), dim=1) of shape (B*T, V), rows ordered b*T + t (batch-first flattened); "
              "new_states.<k> = y of layer k at the last step, (1, B, H_k); layer<k>.* batch-first (B, T, H_k)")


def case_lm(out_dir, projection: bool, old: bool):
    name = "lm_old_projection_relu" if old else ("lm_projection" if projection else "lm_tied")
    tokens = torch.from_numpy(np.random.default_rng(140 + 2 * projection + old).integers(
        0, LM_ARGS["vocab_size"], (B, T)))
    model, result, act, margin, seed, gain = tune(_lm_build(projection, old), _lm_run(tokens))
    repo = PK if old else ESML
    if projection:
        readout = ("relu(decoder.projection(y_last)) -> tied decoder.decoder (weight = embeddings.weight) + bias"
                   if old else "decoder.projection(y_last) (NO ReLU) -> tied decoder.decoder + bias")
    else:
        readout = "tied decoder.decoder (weight = embeddings.weight) + bias, applied to the last layer's y"
    meta = dict(kind="lm", version="pre-0.2 (thr_reparam)" if old else "0.2.0",
                source=src(repo, "benchmarks/lm/models.py", "LanguageModel, Decoder"),
                hyper=dict(LM_ARGS, projection=projection, batch_first=True, zoneout=0.0,
                           last_layer_hidden="hidden_dim if projection else emb_dim"),
                readout=readout, use_trace=False,
                feed="embedding -> layer 0; each layer's y (not the trace) to the next; last layer's y to the decoder",
                inputs="token ids (B, T) int64, batch-first", outputs=LM_OUTPUTS,
                checkpoint_wrapping="bare state_dict: checkpoint_model(model.state_dict(), "
                                    "'<scratch>/<dataset>/EGRU/<run>/checkpoints/EGRU_best_model.cpt') "
                                    "in benchmarks/lm/train.py; embeddings.weight and decoder.decoder.weight "
                                    "are the same tensor, stored under both keys",
                activity=act, min_margin=margin, seed=seed, gain=gain,
                numpy_kernel_max_abs_diff=_lm_diff(model, tokens))
    if old:
        meta["reconstruction"] = (
            "pre-0.2 EvNN is not on PyPI: built from the evnn-pytorch 0.2.0 layer with parameter thr_reparam "
            "(registered last, as the old code does; thr = sigmoid(thr_reparam), here thr_reparam = logit(thr)) "
            "and the old forward (frameworks/pytorch/egru.py of pascalkuthe/EvNN@1c49161); lib/ kernels are "
            "identical between the two versions, so the outputs are the old code's. Old decoder: "
            "F.relu(self.projection(x)) then variational dropout (identity at eval).")
    return write_case(name, {"inputs": tokens, **_lm_arrays(model, tokens, result)}, meta,
                      copy.deepcopy(model.state_dict()), "cpt", out_dir)


def case_lm_two_chunks(out_dir):
    """benchmarks/lm/eval.py evaluate(): hidden = model.init_hidden(B) (all None), then for each bptt chunk
    ``output, hidden, ... = model(data, hidden)``: each layer gets its previous chunk's LAST y as ``state``;
    c and the trace restart from 0 in every chunk (the kernel zero-initialises them)."""
    bptt = 6
    tokens = torch.from_numpy(np.random.default_rng(150).integers(0, LM_ARGS["vocab_size"], (B, 2 * bptt + 1)))
    source = tokens.t().contiguous()  # batchify layout [N, B]; get_batch transposes back to batch-first

    def get_batch(i):  # benchmarks/lm/data.py get_batch(source, i, seq_len=bptt, batch_first=True)
        seq_len = min(bptt, len(source) - 1 - i)
        return source[i:i + seq_len].t(), source[i + 1:i + 1 + seq_len].t().flatten()

    def run_chunks(model):
        hidden, results, records = model.init_hidden(B), [], []
        with torch.no_grad():
            for index in range(0, source.size(0) - 1, bptt):
                data, _ = get_batch(index)
                result = model(data, hidden)
                hidden = result[1]
                results.append(result)
                records.append(model.record)
        return results, records

    def run(model):
        results, records = run_chunks(model)
        ys = [y for r in results for y in r[2]]
        cs = [rec[0] for recs in records for rec in recs]
        os_ = [rec[1] for recs in records for rec in recs]
        thrs = [l.thr for l in model.rnns] * len(results)
        return (results, records), ys, cs, os_, thrs

    model, (results, records), act, margin, seed, gain = tune(_lm_build(False, False), run)
    arrays = {"inputs": tokens[:, :2 * bptt], "inputs.targets": tokens[:, 1:2 * bptt + 1]}
    diff = 0.0
    state = None
    for n, (result, record) in enumerate(zip(results, records)):
        model.record = record
        arrays.update(_lm_arrays(model, None, result, prefix=f"chunk{n}."))
        diff = max(diff, _lm_diff(model, tokens[:, n * bptt:(n + 1) * bptt], state))
        state = result[1]
    with torch.no_grad():
        whole = model(tokens[:, :2 * bptt], model.init_hidden(B))
    arrays["contrast.one_pass_log_probs"] = whole[0]
    meta = dict(kind="lm_two_chunks", version="0.2.0",
                source=src(ESML, "benchmarks/lm/eval.py", "evaluate(); benchmarks/lm/data.py get_batch"),
                hyper=dict(LM_ARGS, projection=False, bptt=bptt, batch_first=True, zoneout=0.0),
                state_rule="chunk0 starts with state None (y, c, trace = 0); each next chunk passes, per layer, the "
                           "previous chunk's new_states[k] = y_k at its last step, shape (1, B, H_k), as EGRU's "
                           "`state`: the initial y. c and the trace are NOT carried: they restart at 0 in each chunk.",
                inputs="inputs = data of both chunks side by side (B, 2*bptt): chunk n is "
                       "inputs[:, n*bptt:(n+1)*bptt]; "
                       "inputs.targets the next tokens (eval.py's targets, flattened per chunk)",
                outputs=LM_OUTPUTS + "; prefixed chunk0. / chunk1.; contrast.one_pass_log_probs = the same "
                        "2*bptt tokens in ONE call (differs from the chunked run from step bptt on, because c "
                        "restarts at each chunk)",
                checkpoint_wrapping="bare state_dict, .cpt (benchmarks/lm/train.py checkpoint_model)",
                activity=act, min_margin=margin, seed=seed, gain=gain, numpy_kernel_max_abs_diff=diff)
    return write_case("lm_two_chunks", arrays, meta, copy.deepcopy(model.state_dict()), "cpt", out_dir)


def _dvs_opt(use_cnn: bool, frame_size: int, num_layers: int, use_all_timesteps: bool):
    # Values of the README's DVS command where they apply (zoneout 0.2319, dropout 0.6321, dropconnect
    # 0.08134, pseudo-derivative-width 1.7); --threshold-mean -0.2465 there fails v0.2.0's assert 0 < thr_mean < 1.
    return SimpleNamespace(use_all_timesteps=use_all_timesteps, frame_size=frame_size, event_agg_method="mean",
                           flatten_frame=not use_cnn, use_cnn=use_cnn, num_layers=num_layers, dropconnect=0.08134,
                           zoneout=0.2319, pseudo_derivative_width=1.7, threshold_mean=0.3, dropout=0.6321)


def _dvs_input(seed: int, batch: int, steps: int) -> torch.Tensor:
    """Event-count frames (B, T, 2, 128, 128) as tonic.transforms.ToFrame gives them, divided by 19.0 like
    get_dvs128_train_val's norm_transform for 'mean': sparse, clustered around a moving blob."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((batch, steps, 2, 128, 128), np.float32)
    yy, xx = np.mgrid[0:128, 0:128]
    for b in range(batch):
        cy, cx, vy, vx = rng.uniform(30, 98), rng.uniform(30, 98), rng.normal(0, 4), rng.normal(0, 4)
        for t in range(steps):
            rate = 2.5 * np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / (2 * 14.0 ** 2)) + 0.01
            for p in range(2):
                frames[b, t, p] = rng.poisson(rate * (0.6 + 0.8 * p))
    return torch.from_numpy(frames / DVS_DATA_MAX_TRAIN)


def case_dvs(out_dir, use_cnn: bool, full_cnn: bool = False):
    if use_cnn:
        name = "dvs_cnn_full_width" if full_cnn else "dvs_cnn"
        opt, units, batch, steps = _dvs_opt(True, 32, 1, True), 32, 2, 8
        channels = REAL_CNN_CHANNELS if full_cnn else (8, 16, 16, 16, 16, 32)
    else:
        name, opt, units, batch, steps, channels = "dvs_flat", _dvs_opt(False, 8, 2, False), 32, 3, 8, None
    x = _dvs_input(160 + use_cnn, batch, steps)

    def build(rng, gain):
        model = EGRUDDVSOptimizedModel(DVS_SENSOR, units, 1, opt, **({"cnn_channels": channels} if use_cnn else {}))
        fill_trained_like(model, rng, gain)
        return model.eval()

    def run(model):
        with torch.no_grad():
            result = model(x, model.init_hidden(batch, "cpu"))
        rec = model.record
        return result, [r[0] for r in rec], [r[1] for r in rec], [r[2] for r in rec], [l.thr for l in model.layers]

    model, result, act, margin, seed, gain = tune(build, run, gains=(0.3, 0.5, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0, 4.0))
    logits, hidden_states, output_gate, linear_out = result
    with torch.no_grad():  # the EGRU input sequence, for the NumPy check of the kernel
        inp = model.event_merger(model.input_maxpool(x.view((batch * steps,) + x.shape[2:])))
        if use_cnn:
            inp = model.conv(inp.unsqueeze(1))
        seq = inp.view(batch, steps, -1)
    diff, layer_in = 0.0, seq
    for layer, (y, c, o, tr) in zip(model.layers, model.record):
        diff = max(diff, check_against_numpy(layer, layer_in, y, c, o, tr, True))
        layer_in = tr
    arrays = {"inputs": x, "inputs.egru0": seq, "out.logits": logits, "out.hidden_states": hidden_states,
              "out.output_gate": output_gate, "out.linear_out": linear_out}
    for k, (y, c, o, tr) in enumerate(model.record):
        arrays.update({f"layer{k}.y": y, f"layer{k}.c": c, f"layer{k}.o": o, f"layer{k}.trace": tr})
    cnn = None
    if use_cnn:
        cnn = {"input": "(B*T, 1, frame_size, frame_size): maxpooled, polarity-mean frame, unsqueezed",
               "layers": [
                   "0 Conv2d(1, C1, kernel_size=11, stride=4, padding=2)", "1 ReLU", "2 MaxPool2d(3, stride=2)",
                   "3 Conv2d(C1, C2, kernel_size=5, padding=2)", "4 ReLU", "5 MaxPool2d(3, stride=2)",
                   "6 Conv2d(C2, C3, kernel_size=3, padding=1)", "7 ReLU",
                   "8 MaxPool2d(3, stride=2) if frame_size >= 64 else Identity",
                   "9 Conv2d(C3, C4, kernel_size=3, padding=1)", "10 ReLU",
                   "11 MaxPool2d(3, stride=2) if frame_size >= 128 else Identity",
                   "12 Conv2d(C4, C5, kernel_size=3, padding=1)", "13 ReLU", "14 Flatten", "15 Linear(C5, L)"],
               "channels_here": list(channels), "channels_real": list(REAL_CNN_CHANNELS),
               "note": "no batchnorm, no dropout inside; spatial size is 1x1 before Flatten for frame_size 32/64/128 "
                       "with a 128x128 sensor, so Flatten order is just the channel order; torch.jit.script'ed "
                       "(keys unchanged: conv.<index>.weight/bias)"}
    meta = dict(kind="dvs", source=src(ESML, "benchmarks/dvs_gesture/models.py",
                                       "EGRUDDVSModel.__init__ + EGRUDDVSOptimizedModel.forward"),
                hyper=dict(vars(opt), units=units, unit_size=1, n_classes=DVS_CLASSES),
                input_pipeline=f"inputs (B, T, 2, 128, 128) = tonic ToFrame event counts / {DVS_DATA_MAX_TRAIN} "
                               "(data pipeline, outside the model); model: view (B*T, 2, 128, 128) -> "
                               f"MaxPool2d(kernel_size=128 // frame_size = {128 // opt.frame_size}) -> mean over the "
                               "polarity channel (event_agg_method 'mean') -> "
                               + ("CNN" if use_cnn else "reshape (B*T, frame_size*frame_size), row-major")
                               + " -> view (B, T, features); inputs.egru0 = that sequence",
                cnn=cnn, use_trace=True,
                feed="every layer's TRACE (after nn.Dropout, identity at eval) is the next layer's input, and the "
                     "last layer's trace is the readout's input; events y are not used downstream",
                readout=("logits = mean over time of fc(trace) (use_all_timesteps)" if opt.use_all_timesteps
                         else "logits = fc(trace[:, -1]) (last time step)"),
                outputs="logits (B, 11); hidden_states = c (B, layers, T, H); output_gate = o (B, layers, T, H); "
                        "linear_out = fc(...) before the time mean ((B, T, 11) with use_all_timesteps, else = logits); "
                        "layer<k>.* batch-first (B, T, H)",
                zoneout_note="zoneout p (args.json 'zoneout') is not in the state_dict; the eval kernel blends with it",
                checkpoint_wrapping=("{'epoch', 'state_dict', 'optimizer_state_dict'} as dvs128.py saves every "
                                     "log_interval epochs to '<rnn_type>-Epoch-<epoch>-Acc-<acc>.pth'") if use_cnn else
                                    "bare model.state_dict(), as dvs128.py saves 'best_model.pth'",
                activity=act, min_margin=margin, seed=seed, gain=gain, numpy_kernel_max_abs_diff=diff)
    state_dict = copy.deepcopy(model.state_dict())
    if use_cnn:  # a real optimizer state after one training step on a copy (the golden model stays as is)
        trainee = EGRUDDVSOptimizedModel(DVS_SENSOR, units, 1, opt, cnn_channels=channels)  # deepcopy of a
        trainee.load_state_dict(state_dict)  # ScriptModule gives non-leaf parameters
        trainee.train()
        optimizer = torch.optim.Adam(list(trainee.parameters()), lr=0.0009975)
        logits_t = trainee(x, None)[0]
        F.cross_entropy(logits_t, torch.arange(batch) % DVS_CLASSES).backward()
        optimizer.step()
        checkpoint = {"epoch": 50, "state_dict": state_dict, "optimizer_state_dict": optimizer.state_dict()}
    else:
        checkpoint = state_dict
    return write_case(name, arrays, meta, checkpoint, "pth", out_dir)


def case_smnist(out_dir):
    c = SimpleNamespace(n_layers=2, n_units=16, dropout_connect=0.0, zoneout=0.0, dropout_forward=0.0,
                        use_grad_clipping=True, grad_clip_norm=0.25, use_output_trace=True)
    rng_in = np.random.default_rng(170)
    pixels = rng_in.uniform(0, 1, (B, T, 1)).astype(np.float32)
    pixels[rng_in.uniform(size=(B, T, 1)) < 0.5] = 0.0  # MNIST rows are mostly background
    x = torch.from_numpy(pixels)

    def build(rng, gain):
        model = smnist_model(c)
        fill_trained_like(model, rng, gain)
        return model.eval()

    def run(model):
        with torch.no_grad():
            result = smnist_eval(model, x, c)
        rec = model.rnn.record
        return result, [r[0] for r in rec], [r[1][0] for r in rec], [r[1][1] for r in rec], \
            [w.rnn.thr for w in model.rnn.rnns]

    model, (rnn_out, states, seq, logits), act, margin, seed, gain = tune(build, run)
    diff, layer_in = 0.0, x
    for w, (y, (cc, o, tr)) in zip(model.rnn.rnns, model.rnn.record):
        diff = max(diff, check_against_numpy(w.rnn, layer_in, y, cc, o, tr, True))
        layer_in = y
    arrays = {"inputs": x, "out.rnn_out": rnn_out, "out.c": states[0], "out.o": states[1], "out.trace": states[2],
              "out.readout_sequence": seq, "out.logits": logits}
    for k, (y, (cc, o, tr)) in enumerate(model.rnn.record):
        arrays.update({f"layer{k}.y": y, f"layer{k}.c": cc, f"layer{k}.o": o, f"layer{k}.trace": tr})
    meta = dict(kind="smnist", source=src(ESML, "benchmarks/smnist/smnist.py + benchmarks/egru/models.py",
                                          "RNNReadoutWrapper(RNNMultiLayerWrapper([RNNWrapper(EGRU)...]))"),
                hyper=dict(vars(c), input_size=1, output_size=10, batch_first=True),
                use_output_trace=True, use_trace=False,
                feed="layer k's event output y (not the trace) is layer k+1's input (variational dropout, identity "
                     "at eval); only the LAST layer's trace reaches the readout",
                readout="logits = hidden2out(trace_last_layer)[:, -1, :] (--use-output-trace; else hidden2out(y)); "
                        "the readout is applied outside the model's forward (smnist.py eval_batch)",
                inputs="pixels (B, T, 1) in [0, 1], batch-first (ToTensor + view(-1, 1); T = 784 in the benchmark)",
                outputs="model(x) returns (rnn_out = y of the last layer, (c, o, trace) of the last layer); "
                        "out.readout_sequence = hidden2out(trace) (B, T, 10); out.logits its last step",
                checkpoint_wrapping="bare state_dict, "
                                    "torch.save(model.state_dict(), '<results>/models/egurc-<epoch>.pt') "
                                    "at the START of every epoch (so egurc-0.pt is untrained and the final weights are "
                                    "never saved)",
                activity=act, min_margin=margin, seed=seed, gain=gain, numpy_kernel_max_abs_diff=diff)
    return write_case("smnist_output_trace", arrays, meta, copy.deepcopy(model.state_dict()), "pt", out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--full-cnn", action="store_true",
                        help="also write dvs_cnn_full_width with the real CNN widths (32 MB) into --full-out")
    parser.add_argument("--full-out", type=Path, default=Path("/tmp/evnn-golden-full"),
                        help="where --full-cnn writes (outside the repository: too big to commit)")
    args = parser.parse_args(argv)
    assert evnn.__version__ == "0.2.0", evnn.__version__
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [case_layer(args.out), case_layer_thr_clamp(args.out), case_zoneout(args.out), case_stacked(args.out),
            case_lm(args.out, projection=False, old=False), case_lm(args.out, projection=True, old=False),
            case_lm(args.out, projection=True, old=True), case_lm_two_chunks(args.out),
            case_dvs(args.out, use_cnn=False), case_dvs(args.out, use_cnn=True), case_smnist(args.out)]
    if args.full_cnn:
        args.full_out.mkdir(parents=True, exist_ok=True)
        rows.append(case_dvs(args.full_out, use_cnn=True, full_cnn=True))
    total = 0
    for r in rows:
        total += r["npz_bytes"] + r["checkpoint_bytes"]
        act = ", ".join(f"{a:.0%}" for a in r["activity"])
        print(f"{r['case']:24s} npz {r['npz_bytes']:8d} B  ckpt {r['checkpoint_bytes']:8d} B  activity [{act}]  "
              f"margin {r['min_margin']:.2e}  |EvNN - numpy kernel| {r['numpy_kernel_max_abs_diff']:.1e}")
    print(f"total {total} B")


if __name__ == "__main__":
    main()
