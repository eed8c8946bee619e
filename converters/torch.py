"""``EGRUNetwork`` (torch) -> float IR."""
from __future__ import annotations

import numpy as np

from egru_deploy.ir import EGRU, Embedding, Graph, Input, Linear


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _linear(module, relu: bool = False) -> Linear:
    bias = _np(module.bias) if module.bias is not None else np.zeros(module.out_features, np.float32)
    return Linear(_np(module.weight), bias, relu=relu)


def from_torch(net) -> Graph:
    layers = []
    if net.embeddings is not None:
        layers.append(Embedding(_np(net.embeddings.weight)))
        inp = Input(net.embeddings.num_embeddings, tokens=True)
    else:
        inp = Input(net.rnns[0].input_size)
    for rnn, use_trace in zip(net.rnns, net.feeds_trace()):
        layers.append(EGRU(
            kernel=_np(rnn.kernel), recurrent_kernel=_np(rnn.recurrent_kernel), bias=_np(rnn.bias),
            recurrent_bias=_np(rnn.recurrent_bias), thr=np.clip(_np(rnn.thr), 0.0, 1.0),
            use_trace=use_trace, zoneout=rnn.zoneout))
    if net.fc is not None:
        layers.append(_linear(net.fc))
    elif net.decoder is not None:
        if net.decoder.projection is not None:
            layers.append(_linear(net.decoder.projection, relu=net.decoder.projection_activation == "relu"))
        layers.append(_linear(net.decoder.decoder))
    return Graph(inp, tuple(layers), net.output_mode)
