"""Train / Compare widgets for the sequence and signal models and tasks of issue 15.

Models: ``transformer``, ``lstm``, ``gru`` (token inputs: ``modular_addition``, ``parity``) and ``cnn1d``
(1-D signals: ``mnist1d``; the MLP works there too). The model list is the engine's registry
(:data:`landscape_core.models.MODELS`); the pairing rule is the engine's (``TrainConfig`` refuses a token
model on images and an image model on tokens with one line, which the form shows once).
"""

from __future__ import annotations

import streamlit as st

from landscape_core.data import SEQUENCE_TASKS, SIGNALS
from landscape_core.models import MODELS, TOKEN_MODELS

#: Models whose widgets live here (the others keep the form's MLP / CNN widgets).
NEW_MODELS: tuple[str, ...] = (*TOKEN_MODELS, "cnn1d")
MODEL_HELP = ("Token tasks (modular_addition, parity): transformer, lstm, gru. mnist1d: mlp or cnn1d. "
              "Images and 2-D point sets: mlp, cnn, resnet20.")


def suitable(dataset: str) -> tuple[str, ...]:
    """The models that accept ``dataset``'s inputs (for the hint under the picker)."""
    if dataset in SEQUENCE_TASKS:
        return TOKEN_MODELS
    if dataset in SIGNALS:
        return ("mlp", "cnn1d")
    return tuple(m for m in MODELS if m not in NEW_MODELS)


def task_widgets(name: str, prefix: str) -> dict:
    """The extra ``DatasetSpec`` fields of the token and signal tasks (``{}`` for the other datasets)."""
    if name == "modular_addition":
        p = st.select_slider("Modulus p (a + b mod p)", [7, 11, 23, 31, 47, 59, 97], value=47, key=f"{prefix}_mod_p")
        frac = st.select_slider("Training fraction of the p² pairs", [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], value=0.5,
                                key=f"{prefix}_mod_frac")
        return {"modulus": int(p), "test_fraction": round(1.0 - float(frac), 6)}
    if name == "parity":
        length = st.slider("Bits per string", 4, 14, 8, key=f"{prefix}_par_len")
        n = st.select_slider("Strings", [64, 128, 256, 512, 1024, 2048], value=256, key=f"{prefix}_par_n")
        return {"seq_len": int(length), "n_samples": int(n)}
    return {}


def model_widgets(model: str, prefix: str) -> dict:
    """``TrainConfig`` fields of a new model (width, depth, heads; channels, activation, BatchNorm)."""
    if model == "transformer":
        width = st.select_slider("Width (d_model)", [16, 32, 64, 128], value=64, key=f"{prefix}_tf_width")
        depth = st.slider("Blocks", 1, 2, 1, key=f"{prefix}_tf_depth")
        heads = st.select_slider("Attention heads", [1, 2, 4, 8], value=4, key=f"{prefix}_tf_heads")
        return {"width": int(width), "depth": int(depth), "heads": int(heads)}
    if model in ("lstm", "gru"):
        width = st.select_slider("Hidden size", [16, 32, 64, 128], value=32, key=f"{prefix}_rnn_width")
        depth = st.slider("Layers", 1, 2, 1, key=f"{prefix}_rnn_depth")
        return {"width": int(width), "depth": int(depth)}
    if model == "cnn1d":
        channels = st.select_slider("Channels", [4, 8, 16, 32], value=16, key=f"{prefix}_c1_channels")
        act = st.selectbox("Activation", ["relu", "tanh", "gelu"], key=f"{prefix}_c1_act")
        bn = st.toggle("BatchNorm", value=False, key=f"{prefix}_c1_bn")
        return {"channels": int(channels), "activation": act, "batchnorm": bool(bn)}
    return {}


def pairing_hint(dataset: str, model: str) -> None:
    """A caption naming the suitable models when the pair will be refused (the error itself shows once)."""
    if model not in suitable(dataset):
        st.caption(f"For **{dataset}** choose: {', '.join(suitable(dataset))}.")
