"""What a training run is configured by: :class:`TrainConfig` (model, data, optimizer, budget, recording).

Frozen and validated on construction; ``to_dict``/``from_dict`` give the form stored in ``run.json`` (so a
run's metadata rebuilds its model and retrains it: :func:`landscape_core.reproduce.retrain_command`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .data import SEQUENCE_TASKS, DataBundle, DatasetSpec
from .models import MODELS, TOKEN_MODELS
from .optimizers import OPTIMIZERS, SCHEDULES, is_sam


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in ``run.json`` as ``config``).

    Attributes:
        dataset: a :class:`DatasetSpec` dict (``{"name": "digits", ...}``); normalised on creation.
        model: registry name (``mlp``, ``cnn``, ``resnet20``, ``cnn1d``, ``transformer``, ``lstm``, ``gru``).
        width, depth: MLP hidden width and number of hidden layers (``64, 2`` = 64-64-C); the
            Transformer's width and blocks; the LSTM / GRU hidden size and layers.
        heads: Transformer attention heads (must divide ``width``).
        activation: hidden activation (``relu``, ``tanh``, ...), MLP and CNN.
        batchnorm: BatchNorm after each hidden layer (MLP, CNN; ResNet-20 always has it).
        channels: CNN base channels (also ResNet-20's base width).
        optimizer: one of ``sgd, adam, adamw, sam, asam, sam-adam``.
        lr: learning rate (> 0). momentum, nesterov: SGD momentum. weight_decay: L2 / decoupled.
        rho, adaptive: SAM radius and ASAM switch.
        beta2: second-moment decay of the Adam family (0.999 default; 0.98 for long full-batch runs).
        batch_size: mini-batch size, 1..n_train (checked against the data in :func:`train`).
        epochs: passes over the training set.
        schedule: ``constant``, ``step`` (x0.1 at 50% and 75%) or ``cosine``, applied per step.
        seed: data order (and the default init seed). init_seed: weight initialisation seed.
        snapshots: trajectory snapshots, evenly spaced over steps incl. init and final (0 = none).
        sharpness_every: measure lambda_max every k steps (0 = off); sharpness_samples: on that many
            training examples.
        max_grad_evals: stop once this many gradient evaluations are spent (equal-compute budgets;
            SAM spends 2 per step).
        eval_every: evaluate (train / test loss and accuracy, weight norm: one history row) every k
            epochs and after the last; 1 = every epoch. Long full-batch runs (grokking) use k > 1.
        save_if_cancelled: save the partial run when training is cancelled.
        device: ``cpu`` or ``cuda``.
    """

    dataset: dict = field(default_factory=lambda: {"name": "digits"})
    model: str = "mlp"
    width: int = 64
    depth: int = 2
    activation: str = "relu"
    batchnorm: bool = False
    channels: int = 16
    heads: int = 4
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    rho: float = 0.05
    adaptive: bool = False
    beta2: float = 0.999
    batch_size: int = 64
    epochs: int = 10
    schedule: str = "constant"
    seed: int = 0
    init_seed: int | None = None
    snapshots: int = 12
    sharpness_every: int = 0
    sharpness_samples: int = 256
    max_grad_evals: int | None = None
    eval_every: int = 1
    save_if_cancelled: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        ds = self.dataset
        if isinstance(ds, str):
            ds = {"name": ds}
        elif isinstance(ds, DatasetSpec):
            ds = ds.to_dict()
        if not isinstance(ds, Mapping):
            raise ValueError(f"dataset must be a dataset spec dict, got {ds!r}")
        object.__setattr__(self, "dataset", DatasetSpec.from_dict(dict(ds)).to_dict())
        if self.init_seed is None:
            object.__setattr__(self, "init_seed", self.seed)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(sorted(MODELS))}")
        tokens = self.dataset["name"] in SEQUENCE_TASKS
        if tokens != (self.model in TOKEN_MODELS):
            raise ValueError(
                f"dataset {self.dataset['name']!r} has token inputs: choose model {', '.join(TOKEN_MODELS)}; got "
                f"{self.model!r}" if tokens else
                f"model {self.model!r} needs a token dataset ({', '.join(SEQUENCE_TASKS)}), got {self.dataset['name']!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        checks: list[tuple[str, bool]] = [
            ("lr", self.lr > 0 and math.isfinite(self.lr)),
            ("momentum", 0.0 <= self.momentum < 1.0),
            ("weight_decay", 0.0 <= self.weight_decay < math.inf),
            ("rho", 0.0 <= self.rho < math.inf),
            ("beta2", 0.0 <= self.beta2 < 1.0),
            ("width", self.width >= 1),
            ("depth", self.depth >= 0),
            ("channels", self.channels >= 1),
            ("heads", self.heads >= 1),
            ("eval_every", self.eval_every >= 1),
            ("batch_size", self.batch_size >= 1),
            ("epochs", self.epochs >= 1),
            ("snapshots", self.snapshots == 0 or self.snapshots >= 2),
            ("sharpness_every", self.sharpness_every >= 0),
            ("sharpness_samples", self.sharpness_samples >= 1),
            ("max_grad_evals", self.max_grad_evals is None or self.max_grad_evals >= 2),
        ]
        need = {
            "lr": "> 0", "momentum": "in [0, 1)", "weight_decay": ">= 0", "rho": ">= 0", "width": ">= 1",
            "depth": ">= 0", "channels": ">= 1", "batch_size": ">= 1", "epochs": ">= 1",
            "snapshots": "0 or >= 2", "sharpness_every": ">= 0", "sharpness_samples": ">= 1",
            "max_grad_evals": ">= 2", "heads": ">= 1", "eval_every": ">= 1", "beta2": "in [0, 1)",
        }
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name} must be {need[name]}, got {getattr(self, name)!r}")
        if self.nesterov and self.momentum == 0 and self.optimizer in ("sgd", "sam", "asam"):
            raise ValueError("nesterov needs momentum > 0, got momentum=0")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    @property
    def grad_evals_per_step(self) -> int:
        """2 for SAM-type optimizers with rho > 0 (ascent + descent pass), else 1."""
        return 2 if (is_sam(self.optimizer) and self.rho > 0) else 1

    def model_kwargs(self, bundle: DataBundle | None = None) -> dict:
        """Registry kwargs of the model (token models also take ``bundle.vocab_size``)."""
        if self.model == "mlp":
            return {"width": self.width, "depth": self.depth, "activation": self.activation,
                    "batchnorm": self.batchnorm}
        if self.model in ("cnn", "cnn1d"):
            return {"channels": self.channels, "activation": self.activation, "batchnorm": self.batchnorm}
        if self.model in TOKEN_MODELS:
            vocab = None if bundle is None else bundle.vocab_size
            if bundle is not None and vocab is None:
                raise ValueError(f"model {self.model!r} needs a token dataset (modular_addition, parity), "
                                 f"got {self.dataset['name']!r}")
            kw: dict[str, Any] = {"width": self.width, "depth": self.depth}
            if self.model == "transformer":
                kw["heads"] = self.heads
            return kw if vocab is None else {**kw, "vocab_size": vocab}
        return {"width": self.channels}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**d)

    def auto_name(self) -> str:
        return f"{self.dataset['name']}-{self.model}-{self.optimizer}-s{self.seed}"


__all__ = ["TrainConfig"]
