"""Torch EGRU with EvNN's exact forward pass and surrogate gradient.

Parameter names follow EvNN (``kernel``, ``recurrent_kernel``, ``bias``, ``recurrent_bias``, ``thr``)
so a ``state_dict`` of :class:`EGRUNetwork` is an EvNN-layout checkpoint (``rnns.0.kernel`` ...).
"""
from __future__ import annotations

import math
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

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = False,
                 dampening_factor: float = 0.7, pseudo_derivative_support: float = 1.0,
                 thr_mean: float = 0.3):
        super().__init__()
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        h = hidden_size
        self.kernel = nn.Parameter(torch.empty(input_size, 3 * h))
        self.recurrent_kernel = nn.Parameter(torch.empty(h, 3 * h))
        self.bias = nn.Parameter(torch.zeros(3 * h))
        self.recurrent_bias = nn.Parameter(torch.zeros(3 * h))
        self.thr = nn.Parameter(torch.empty(h))
        self.register_buffer("dampening_factor", torch.tensor(dampening_factor))
        self.register_buffer("pseudo_derivative_support", torch.tensor(pseudo_derivative_support))
        self.reset_parameters(thr_mean)
        # Gate non-linearities; quantization-aware training swaps in a profile's approximations.
        self.sigmoid: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid
        self.tanh: Callable[[torch.Tensor], torch.Tensor] = torch.tanh
        self.event_rounding: Callable[[torch.Tensor], torch.Tensor] | None = None  # QAT: the chip's event format

    def reset_parameters(self, thr_mean: float = 0.3) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.kernel, -bound, bound)
        for i in range(3):  # orthogonal recurrent blocks, as EvNN initialises them
            nn.init.orthogonal_(self.recurrent_kernel.data[:, i * self.hidden_size:(i + 1) * self.hidden_size])
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.recurrent_bias)
        with torch.no_grad():
            self.thr.copy_(torch.clamp(torch.normal(thr_mean, 0.05, (self.hidden_size,)), 0.0, 1.0))

    def forward(self, x: torch.Tensor, kernel_transform=None):
        """Return ``(y, trace)``, both shaped like the input (with H features)."""
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
        y = x.new_zeros(batch, h)
        trace = x.new_zeros(batch, h)
        ys, traces = [], []
        for t in range(t_steps):
            gx = gx_all[t]
            gh = y @ rkernel + self.recurrent_bias
            z = self.sigmoid(gx[:, :h] + gh[:, :h])
            r = self.sigmoid(gx[:, h:2 * h] + gh[:, h:2 * h])
            g = self.tanh(gx[:, 2 * h:] + r * gh[:, 2 * h:])
            c_new = z * c + (1 - z) * g
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


class Decoder(nn.Module):
    """Readout with optional projection + ReLU (EvNN language-model layout ``decoder.*``)."""

    def __init__(self, in_size: int, out_size: int, projection_size: int | None = None):
        super().__init__()
        self.projection = nn.Linear(in_size, projection_size) if projection_size else None
        self.decoder = nn.Linear(projection_size or in_size, out_size)

    def forward(self, x):
        if self.projection is not None:
            x = torch.relu(self.projection(x))
        return self.decoder(x)


class EGRUNetwork(nn.Module):
    """Optional embedding, a stack of EGRU layers, optional readout; output mode sequence/last/mean.

    Readout naming: ``fc`` for a plain classifier, ``decoder.projection``/``decoder.decoder``
    when a projection is used (both EvNN layouts, both read by ``converters.evnn``).
    """

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int | None = None,
                 vocab_size: int | None = None, projection_size: int | None = None,
                 use_trace: bool = False, output_mode: str = "sequence", batch_first: bool = True):
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
                self.decoder = Decoder(hidden_sizes[-1], output_size, projection_size)
            else:
                self.fc = nn.Linear(hidden_sizes[-1], output_size)

    def forward(self, x: torch.Tensor, kernel_transform=None):
        """Return ``(output, events)``; ``events`` lists each layer's ``y`` (T, B, H)."""
        if self.embeddings is not None:
            x = self.embeddings(x)
        if self.batch_first:
            x = x.transpose(0, 1)
        events = []
        for i, rnn in enumerate(self.rnns):
            y, trace = rnn(x, kernel_transform)
            events.append(y)
            last = i == len(self.rnns) - 1
            x = trace if (self.use_trace and not last) else y
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
