"""Torch EGRU with EvNN's exact forward pass and surrogate gradient.

Each layer's parameters are EvNN v0.2.0's (``evnn_pytorch.EGRU``): the same names, shapes, order
and kinds (``_max_norm``, ``kernel``, ``recurrent_kernel``, ``bias``, ``recurrent_bias``,
``dampening_factor``, ``pseudo_derivative_support``, ``thr``; the three [1] tensors are Parameters
without gradient) and the same initialisation, so ``rnns.<i>.*`` of an :class:`EGRUNetwork`
state_dict loads strictly into ``evnn_pytorch.EGRU`` and an EvNN layer's state_dict into
:class:`EGRU`. Older checkpoints of this package (0-d training constants, no ``_max_norm``) still
load. docs/evnn_compat.md cites the EvNN code.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

TRACE_DECAY = 0.9


class _SpikeFn(torch.autograd.Function):
    """Heaviside H(x) with H(0) = 0; EvNN pseudo-derivative ``damp * max(0, 1 - support*|x|)``."""

    @staticmethod
    def forward(ctx, x, dampening_factor, support):
        ctx.save_for_backward(x, dampening_factor, support)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, damp, support = ctx.saved_tensors
        surrogate = damp * torch.clamp(1.0 - support * x.abs(), min=0.0)
        return grad * surrogate, None, None


def spike(x: torch.Tensor, dampening_factor: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    return _SpikeFn.apply(x, dampening_factor, support)


class EGRU(nn.Module):
    """One EGRU layer. Input ``(T, B, I)`` (or batch-first), returns events ``y`` and the trace."""

    # evnn_pytorch.EGRU's parameters in its registration order: the order of its state_dict keys.
    PARAMETER_ORDER = ("_max_norm", "kernel", "recurrent_kernel", "bias", "recurrent_bias", "dampening_factor",
                       "pseudo_derivative_support", "thr")

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = False,
                 dampening_factor: float = 0.7, pseudo_derivative_support: float = 1.0,
                 thr_mean: float = 0.3, zoneout: float = 0.0, weight_initialization_gain: float = 1.0,
                 grad_clip: float | None = None):
        super().__init__()
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        self.weight_initialization_gain = weight_initialization_gain
        h = hidden_size
        # EvNN v0.2.0's parameters, registered in its order (so state_dict keys come in its order):
        # _max_norm [1] (gradient clipping of EvNN's backward kernel; -1 = off), kernel, recurrent_kernel,
        # bias, recurrent_bias, dampening_factor [1], pseudo_derivative_support [1], thr [H]. The three
        # [1] tensors are Parameters with requires_grad=False, as in EvNN, so strict load_state_dict works
        # both ways between this module and evnn_pytorch.EGRU.
        self._max_norm = nn.Parameter(torch.tensor([float(grad_clip) if grad_clip else -1.0]), requires_grad=False)
        self.kernel = nn.Parameter(torch.empty(input_size, 3 * h))
        self.recurrent_kernel = nn.Parameter(torch.empty(h, 3 * h))
        self.bias = nn.Parameter(torch.zeros(3 * h))
        self.recurrent_bias = nn.Parameter(torch.zeros(3 * h))
        self.dampening_factor = nn.Parameter(torch.tensor([float(dampening_factor)]), requires_grad=False)
        self.pseudo_derivative_support = nn.Parameter(torch.tensor([float(pseudo_derivative_support)]),
                                                      requires_grad=False)
        self.thr = nn.Parameter(torch.empty(h))
        self.reset_parameters(thr_mean)
        # Gate non-linearities; quantization-aware training swaps in a profile's approximations.
        self.sigmoid: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid
        self.tanh: Callable[[torch.Tensor], torch.Tensor] = torch.tanh
        self.event_rounding: Callable[[torch.Tensor], torch.Tensor] | None = None  # QAT: the chip's event format
        # Zoneout probability p (EvNN's ``zoneout``; not in the state_dict) and its eval blend
        # ``blend(c, c')`` (default p*c + (1-p)*c'; QAT swaps in the profile's integer blend).
        self.zoneout = float(zoneout)
        self.zoneout_blend: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def reset_parameters(self, thr_mean: float = 0.3) -> None:
        """EvNN v0.2.0's initialisation (``frameworks/pytorch/egru.py``): ``xavier_normal_`` with
        ``weight_initialization_gain`` on kernel and recurrent_kernel (torch's fans of an [in, 3H]
        matrix), zero biases, then thresholds ~ Beta(3 * thr_mean / (1 - thr_mean), 3), mean thr_mean."""
        if not 0.0 < thr_mean < 1.0:
            raise ValueError(f"thr_mean must be between 0 and 1, got {thr_mean}")
        nn.init.xavier_normal_(self.kernel, gain=self.weight_initialization_gain)
        nn.init.xavier_normal_(self.recurrent_kernel, gain=self.weight_initialization_gain)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.recurrent_bias)
        beta = 3.0
        alpha = beta * thr_mean / (1.0 - thr_mean)
        with torch.no_grad():
            self.thr.copy_(torch.distributions.Beta(alpha, beta).sample(torch.Size([self.hidden_size])))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Also read this package's older checkpoints: 0-d ``dampening_factor`` and
        ``pseudo_derivative_support`` (then buffers), and no ``_max_norm`` (gradient clipping off)."""
        for name in ("dampening_factor", "pseudo_derivative_support"):
            value = state_dict.get(prefix + name)
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                state_dict[prefix + name] = value.reshape(1)
        if prefix + "kernel" in state_dict and prefix + "_max_norm" not in state_dict:
            state_dict[prefix + "_max_norm"] = torch.tensor([-1.0])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor, kernel_transform=None, initial_events: torch.Tensor | None = None):
        """Return ``(y, trace)``, both shaped like the input (with H features).

        ``initial_events``: y before the first step, (B, H) or EvNN's ``state`` shape (1, B, H); it
        enters only through the recurrent kernel at step 0, c and the trace start at 0 (EvNN
        ``egru.cc``: ``output[0] = y0``, h and trace zeros).
        """
        if self.batch_first:
            x = x.transpose(0, 1)
        t_steps, batch, _ = x.shape
        h = self.hidden_size
        thr = torch.clamp(self.thr, 0.0, 1.0)
        kernel, rkernel = self.kernel, self.recurrent_kernel
        if kernel_transform is not None:  # fake quantization of the weights during QAT
            kernel, rkernel = kernel_transform(kernel), kernel_transform(rkernel)
        gx_all = x @ kernel + self.bias
        c = x.new_zeros(batch, h)
        if initial_events is None:
            y = x.new_zeros(batch, h)
        else:
            if tuple(initial_events.shape) not in ((batch, h), (1, batch, h)):
                raise ValueError(f"initial_events: expected shape ({batch}, {h}) or (1, {batch}, {h}), "
                                 f"got {tuple(initial_events.shape)}")
            y = initial_events.reshape(batch, h).to(x.dtype)
        trace = x.new_zeros(batch, h)
        ys, traces = [], []
        # unbind, not gx_all[t]: indexing costs a full-size zero gradient per step in backward (70 s per
        # batch at T=784, sMNIST); the values are the same.
        for gx in gx_all.unbind(0):
            gh = y @ rkernel + self.recurrent_bias
            z = self.sigmoid(gx[:, :h] + gh[:, :h])
            r = self.sigmoid(gx[:, h:2 * h] + gh[:, h:2 * h])
            g = self.tanh(gx[:, 2 * h:] + r * gh[:, 2 * h:])
            c_new = z * c + (1 - z) * g
            if self.zoneout:
                c_new = self._zoneout(c, c_new)
            o = spike(c_new - thr, self.dampening_factor, self.pseudo_derivative_support)
            c = c_new - o * thr
            y = o * c_new
            if self.event_rounding is not None:
                y = self.event_rounding(y)
            trace = TRACE_DECAY * trace + (1 - TRACE_DECAY) * y
            ys.append(y)
            traces.append(trace)
        y_seq, trace_seq = torch.stack(ys), torch.stack(traces)
        if self.batch_first:
            y_seq, trace_seq = y_seq.transpose(0, 1), trace_seq.transpose(0, 1)
        return y_seq, trace_seq

    def _zoneout(self, c: torch.Tensor, c_new: torch.Tensor) -> torch.Tensor:
        """EvNN lib/egru_forward_cpu.cc, right after c' and before the threshold: in training
        c' = (c' - c) * mask + c with mask ~ Bernoulli(1 - p) (base_rnn.py _get_zoneout_mask), else the
        blend c' = p * c + (1 - p) * c' (c: the previous post-reset state)."""
        p = self.zoneout
        if self.training:
            return (c_new - c) * torch.bernoulli(torch.full_like(c_new, 1.0 - p)) + c
        if self.zoneout_blend is not None:
            return self.zoneout_blend(c, c_new)
        return p * c + (1 - p) * c_new


PROJECTION_ACTIVATIONS = ("none", "relu")


class Decoder(nn.Module):
    """Readout with an optional projection (EvNN language-model layout ``decoder.*``).

    ``projection_activation``: "none" is EvNN v0.2.0's ``Decoder`` (``benchmarks/lm/models.py``:
    ``x = self.projection(x)``), "relu" the pre-0.2 one (``F.relu(self.projection(x))``).
    """

    def __init__(self, in_size: int, out_size: int, projection_size: int | None = None,
                 projection_activation: str = "none"):
        super().__init__()
        if projection_activation not in PROJECTION_ACTIVATIONS:
            raise ValueError(f"projection_activation must be one of {PROJECTION_ACTIVATIONS}, "
                             f"got {projection_activation!r}")
        self.projection_activation = projection_activation
        self.projection = nn.Linear(in_size, projection_size) if projection_size else None
        self.decoder = nn.Linear(projection_size or in_size, out_size)

    def forward(self, x):
        if self.projection is not None:
            x = self.projection(x)
            if self.projection_activation == "relu":
                x = torch.relu(x)
        return self.decoder(x)


class EGRUNetwork(nn.Module):
    """Optional embedding, a stack of EGRU layers, optional readout; output mode sequence/last/mean.

    Readout naming: ``fc`` for a plain classifier, ``decoder.projection``/``decoder.decoder``
    when a projection is used (both EvNN layouts, both read by ``converters.evnn``). The projection
    has no activation by default, as EvNN v0.2.0's language model (``projection_activation="relu"``:
    pre-0.2's), the rule ``converters.evnn`` applies to a checkpoint with ``thr`` keys.
    """

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int | None = None,
                 vocab_size: int | None = None, projection_size: int | None = None,
                 use_trace: bool | list[bool] = False, output_mode: str = "sequence", batch_first: bool = True,
                 projection_activation: str = "none"):
        super().__init__()
        if output_mode not in ("sequence", "last", "mean"):
            raise ValueError(f"output_mode must be sequence, last or mean, got {output_mode!r}")
        self.batch_first, self.output_mode, self.use_trace = batch_first, output_mode, use_trace
        self.embeddings = nn.Embedding(vocab_size, input_size) if vocab_size else None
        sizes = [input_size, *hidden_sizes]
        self.rnns = nn.ModuleList(EGRU(sizes[i], sizes[i + 1]) for i in range(len(hidden_sizes)))
        self.fc = None
        self.decoder = None
        if output_size is not None:
            if projection_size:
                self.decoder = Decoder(hidden_sizes[-1], output_size, projection_size, projection_activation)
            else:
                self.fc = nn.Linear(hidden_sizes[-1], output_size)

    def feeds_trace(self) -> list[bool]:
        """Per layer, whether its trace (instead of y) feeds the next layer or, for the last one, the
        readout: ``use_trace`` as a list, or a bool meaning every layer but the last."""
        n = len(self.rnns)
        if isinstance(self.use_trace, (list, tuple)):
            if len(self.use_trace) != n:
                raise ValueError(f"use_trace: expected one entry per EGRU layer ({n}), got {len(self.use_trace)}")
            return [bool(t) for t in self.use_trace]
        return [bool(self.use_trace)] * (n - 1) + [False]

    def forward(self, x: torch.Tensor, kernel_transform=None, initial_events=None):
        """Return ``(output, events)``; ``events`` lists each layer's ``y`` (T, B, H).

        ``initial_events``: None or one (B, H) tensor or None per layer (``EGRU.forward``);
        ``events[i][-1]`` continues a sequence on its next chunk.
        """
        if self.embeddings is not None:
            x = self.embeddings(x)
        if self.batch_first:
            x = x.transpose(0, 1)
        n = len(self.rnns)
        initial = [None] * n if initial_events is None else list(initial_events)
        if len(initial) != n:
            raise ValueError(f"initial_events: expected one entry per EGRU layer ({n}), got {len(initial)}")
        events = []
        for rnn, trace_out, y0 in zip(self.rnns, self.feeds_trace(), initial):
            y, trace = rnn(x, kernel_transform, y0)
            events.append(y)
            x = trace if trace_out else y
        if self.fc is not None:
            x = self.fc(x)
        elif self.decoder is not None:
            x = self.decoder(x)
        if self.output_mode == "last":
            out = x[-1]
        elif self.output_mode == "mean":
            out = x.mean(0)
        else:
            out = x.transpose(0, 1) if self.batch_first else x
        return out, events
