"""Run health: is a trained or imported model learning anything at all?

Two checks, both pure (no files, no UI):

- :func:`check_training`, called once per epoch with the history so far, says whether training has
  *diverged* (non-finite or exploding loss, or accuracy that collapsed to / stalled at chance level) and
  should stop, or merely sits at *chance* level while its loss still falls. The explanation is one line in
  terms of the learning rate, the batch size and, when measured, ``lambda_max`` against the gradient-descent
  stability threshold ``2/lr`` (a quadratic with curvature ``lambda`` is stable under GD iff
  ``lambda < 2/lr``; Cohen et al. 2021, "Gradient descent on neural networks typically occurs at the edge
  of stability").
- :func:`check_import` evaluates imported weights on their data and compares accuracy with chance and
  with what the metadata claims; for registry models with an ``activation`` setting it re-evaluates the
  *same* weights with every other activation and names the one that restores accuracy (the activation
  cannot be read from a state dict); else it tries standardised inputs (a normalisation mismatch), else
  it blames the dataset.

Chance level for ``C`` classes is ``p = 1/C``. An accuracy ``a`` measured on ``n`` examples is "at chance"
when ``a <= p + Z * sqrt(p (1 - p) / n)``: a classifier that guesses would exceed that bound with
probability ~0.1% (normal approximation of the binomial, ``Z = 3``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .functional import LossFunction
from .models import ACTIVATIONS, MODELS, build_model
from .results import from_fields

#: standard deviations above chance that an accuracy must reach to count as "learned something"
Z_CHANCE = 3.0
#: a training loss above this multiple of ln(C) (a uniform guess) counts as exploded
EXPLODE_FACTOR = 2.0
#: relative loss decrease per epoch below which a chance-level run counts as stalled (lr=1e-3 SGD on digits
#: still falls ~0.5% per epoch near ln C and then learns; lr=1e-4 falls ~0.04%)
STALL_REL = 0.002
#: optimizer steps over which a loss at chance must have stalled before training stops: a fresh network
#: often sits on the ln C plateau for tens of steps (a full-batch Transformer on modular addition does),
#: while a learning rate too large for the curvature keeps it there for hundreds.
STALL_STEPS = 200
#: an import is suspect when its accuracy is this far (absolute) below the claimed one, or below an
#: alternative activation's, beyond the binomial noise of the comparison
IMPORT_GAP = 0.05
_ADAM_LIKE = ("adam", "adamw", "sam-adam")


def chance_band(num_classes: int, n: int, z: float = Z_CHANCE) -> tuple[float, float]:
    """``(p, margin)``: chance accuracy ``1/C`` and ``z`` binomial standard deviations on ``n`` examples."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = 1.0 / num_classes
    return p, z * math.sqrt(p * (1.0 - p) / n)


@dataclass(frozen=True)
class Divergence:
    """A training-health verdict.

    Attributes:
        status: ``"diverged"`` (training should stop) or ``"chance"`` (at chance level, loss still falling).
        reason: ``"non-finite"``, ``"exploded"``, ``"collapsed"``, ``"stalled"`` or ``"chance"``.
        epoch: the epoch the verdict is about.
        stop: whether training should stop now.
        message: one line for the user (lr, batch size, lambda_max vs 2/lr).
        chance, margin: chance accuracy and its binomial margin on the test set.
    """

    status: str
    reason: str
    epoch: int
    stop: bool
    message: str
    chance: float
    margin: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Divergence:
        return from_fields(cls, dict(d))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _stability(lr: float, batch_size: int, optimizer: str | None, lambda_max: float | None) -> str:
    """The lr / batch size / lambda_max-vs-2/lr part of an explanation."""
    opt = optimizer.upper() if optimizer else "the optimizer"
    thr = 2.0 / lr
    if lambda_max is not None and math.isfinite(lambda_max):
        side = ">" if lambda_max > thr else "<="
        sharp = f"largest measured lambda_max = {lambda_max:.3g} {side} 2/lr = {thr:.3g}"
    else:
        sharp = f"gradient descent is unstable once lambda_max > 2/lr = {thr:.3g} (lambda_max not tracked)"
    if optimizer in _ADAM_LIKE:
        sharp += "; for Adam-type steps the threshold applies to the preconditioned sharpness"
    return f"{opt} at lr={lr:g}, batch size {batch_size}: {sharp}"


def check_training(
    history: Sequence[Mapping[str, Any]],
    *,
    num_classes: int,
    lr: float,
    batch_size: int,
    n_test: int,
    optimizer: str | None = None,
    lambda_max: float | None = None,
) -> Divergence | None:
    """Health of a training run after its latest epoch (``history[-1]``); ``None`` when it is learning.

    Rules, in order (``L`` = train loss, ``a`` = test accuracy, ``p +- m`` = :func:`chance_band`):

    1. ``L`` not finite -> diverged (``non-finite``);
    2. ``L > 2 ln C`` (twice the loss of a uniform guess) -> diverged (``exploded``);
    Rules 3-5 apply only when the train accuracy (if recorded) is at chance too: a net that fits its
    training set while the test accuracy stays at chance is memorising (as before grokking), not diverging.

    3. ``a <= p + m`` after an earlier epoch had ``a > p + m`` -> diverged (``collapsed``);
    4. ``a <= p + m`` and ``L`` fell by less than ``STALL_REL`` over the last ``STALL_STEPS`` optimizer steps
       (judged only once that many steps were taken) -> diverged (``stalled``);
    5. ``a <= p + m`` otherwise -> ``chance`` (keep training: the loss is still falling).

    Args:
        history: per-epoch rows with ``epoch``, ``train_loss``, ``test_acc`` (as :func:`train` records).
        num_classes: ``C``.
        lr, batch_size, optimizer: for the explanation.
        n_test: test-set size (the binomial margin).
        lambda_max: the largest sharpness measured so far, if tracked (after a collapse the net is flat, so
            the latest value would hide the instability that caused it).
    """
    if not history:
        return None
    row = history[-1]
    epoch = int(row.get("epoch", len(history)))
    loss, acc = float(row["train_loss"]), float(row.get("test_acc", math.nan))
    classify = num_classes >= 2 and n_test >= 1 and math.isfinite(acc)  # no accuracy (mse): loss rules only
    p, m = chance_band(num_classes, n_test) if classify else (math.nan, math.nan)
    ln_c = math.log(num_classes) if num_classes >= 2 else math.inf
    why = _stability(lr, batch_size, optimizer, lambda_max)
    chance_s = f"chance level for {num_classes} classes ({_pct(p)} + {_pct(m)}, {Z_CHANCE:g} s.d. on {n_test} test examples)"

    def verdict(status: str, reason: str, stop: bool, what: str, advice: str) -> Divergence:
        return Divergence(status=status, reason=reason, epoch=epoch, stop=stop, chance=p, margin=m,
                          message=f"{what}. {why}; {advice}.")

    lower = "lower lr (e.g. by 10x) or raise the batch size"
    if not math.isfinite(loss):
        return verdict("diverged", "non-finite", True, f"Diverged at epoch {epoch}: train loss is {loss}", lower)
    if loss > EXPLODE_FACTOR * ln_c:
        return verdict("diverged", "exploded", True,
                       f"Diverged at epoch {epoch}: train loss {loss:.3g} is above {EXPLODE_FACTOR:g} ln {num_classes}"
                       f" = {EXPLODE_FACTOR * ln_c:.3g} (worse than a uniform guess)", lower)
    if not classify or acc > p + m:
        return None
    train_acc = float(row.get("train_acc", math.nan))
    if math.isfinite(train_acc) and train_acc > p + m:
        return None  # it fits its training data: memorisation (e.g. before grokking), not divergence
    earlier = [float(r["test_acc"]) for r in history[:-1] if math.isfinite(float(r["test_acc"]))]
    if earlier and max(earlier) > p + m:
        best = max(earlier)
        return verdict("diverged", "collapsed", True,
                       f"Diverged at epoch {epoch}: test accuracy fell to {_pct(acc)}, {chance_s}, after "
                       f"{_pct(best)} earlier", lower)
    step = int(row.get("step", epoch))
    window = [r for r in history[:-1] if int(r.get("step", r.get("epoch", 0))) <= step - STALL_STEPS]
    prev = float(window[-1]["train_loss"]) if window else None
    if prev is not None and math.isfinite(prev) and loss > prev * (1.0 - STALL_REL):
        return verdict("diverged", "stalled", True,
                       f"Not learning at epoch {epoch}: test accuracy {_pct(acc)} is {chance_s} and the train loss "
                       f"{loss:.4g} fell by less than {STALL_REL:.1%} over the last {STALL_STEPS} steps "
                       f"(ln {num_classes} = {ln_c:.4g})", "if lr is large, lower it; if it is tiny, raise it")
    return verdict("chance", "chance", False,
                   f"At chance level after epoch {epoch}: test accuracy {_pct(acc)} is {chance_s}; the train loss "
                   f"{loss:.4g} is still falling", "train longer or raise lr if it is small")


# --- imports ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportCheck:
    """Plausibility of imported weights on their data.

    Attributes:
        status: ``"ok"`` or ``"suspect"``.
        cause: ``None``, ``"activation"``, ``"normalisation"``, ``"dataset"`` or ``"metadata"``.
        test_acc, test_loss: measured on ``n`` test examples.
        claimed_acc: the metadata's test accuracy, if any.
        chance, margin: chance accuracy and its binomial margin on ``n``.
        alternatives: accuracy with each other activation / input transform tried (name -> accuracy).
        suggestion: the setting that restores accuracy (``{"activation": "tanh"}``...) or ``None``.
        message: one line for the user.
    """

    status: str
    cause: str | None
    test_acc: float
    test_loss: float
    claimed_acc: float | None
    chance: float
    margin: float
    n: int
    alternatives: dict
    suggestion: dict | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImportCheck:
        return from_fields(cls, dict(d))


def _build(spec: Mapping[str, Any], state: Mapping[str, Tensor]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the global RNG alone
        model = build_model(dict(spec))
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def _evaluate(model: nn.Module, X: Tensor, y: Tensor) -> tuple[float, float]:
    return LossFunction(model, X, y, batch_size=1024).evaluate()


def _with_activation(spec: Mapping[str, Any], act: str) -> dict:
    return {"name": spec["name"], "kwargs": {**dict(spec.get("kwargs", {})), "activation": act}}


def check_import(
    spec: Mapping[str, Any],
    state: Mapping[str, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    num_classes: int,
    claimed: Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
) -> ImportCheck:
    """Is the imported model plausible on its data? Diagnoses the likely cause when it is not.

    Suspect when test accuracy ``a`` is at chance (``a <= p + m``, :func:`chance_band`), or more than
    ``max(IMPORT_GAP, 3 s.e.)`` below the metadata's ``claimed["test_acc"]``, or when another activation
    gives more than that much better accuracy on the same weights (s.e. of a difference of two binomial
    proportions on ``n`` examples, ``sqrt(2 a (1 - a) / n)``), or inputs standardised to mean 0 and
    standard deviation 1 do (a normalisation mismatch). Costs ``len(ACTIVATIONS) + 1`` evaluations on ``test``.

    Args:
        spec: the model spec (``{"name", "kwargs"}``) the weights were loaded into.
        state: the weights (a state dict matching ``spec``).
        test: ``(X, y)`` evaluation data (e.g. a fixed subset of the test split).
        num_classes: ``C`` (chance = 1/C).
        claimed: the imported metadata's ``final`` dict (``test_acc``), if any.
        model: the imported model (default: rebuilt from ``spec`` and ``state``, registry models only);
            other activations are tried only for registry models (``spec["name"]`` in ``MODELS``).
    """
    X, y = test
    n = int(len(y))
    p, m = chance_band(num_classes, n)
    model = _build(spec, state) if model is None else model
    loss, acc = _evaluate(model, X, y)
    claimed_acc = None
    if claimed and isinstance(claimed.get("test_acc"), (int, float)) and math.isfinite(float(claimed["test_acc"])):
        claimed_acc = float(claimed["test_acc"])

    def gap_for(a: float) -> float:
        return max(IMPORT_GAP, 3.0 * math.sqrt(2.0 * max(a * (1.0 - a), 1e-4) / n))

    alternatives: dict[str, float] = {}
    act = dict(spec.get("kwargs", {})).get("activation")
    if isinstance(act, str) and spec.get("name") in MODELS:
        for other in ACTIVATIONS:
            if other != act:
                alternatives[f"activation={other}"] = _evaluate(_build(_with_activation(spec, other), state), X, y)[1]
    best_name, best_acc = max(alternatives.items(), key=lambda kv: kv[1], default=(None, -1.0))
    at_chance = acc <= p + m
    below_claim = claimed_acc is not None and acc < claimed_acc - gap_for(claimed_acc)
    head = f"Imported weights reach {_pct(acc)} test accuracy on {n} examples"
    common = dict(test_acc=acc, test_loss=loss, claimed_acc=claimed_acc, chance=p, margin=m, n=n)
    if best_name is not None and best_acc > acc + gap_for(best_acc):
        other = best_name.split("=", 1)[1]
        return ImportCheck(status="suspect", cause="activation", alternatives=alternatives,
                           suggestion={"activation": other}, **common,
                           message=f"{head}, but {_pct(best_acc)} with activation {other!r} instead of {act!r}: "
                                   f"the weights were probably trained with {other} (a state dict does not "
                                   f"store the activation); re-import with activation={other}.")
    Xs = (X - X.mean()) / X.std().clamp_min(1e-12)
    alternatives["inputs standardised"] = _evaluate(model, Xs, y)[1]
    if alternatives["inputs standardised"] > acc + gap_for(alternatives["inputs standardised"]):
        return ImportCheck(status="suspect", cause="normalisation", alternatives=alternatives, suggestion=None,
                           **common, message=f"{head}, but {_pct(alternatives['inputs standardised'])} on "
                           "standardised inputs: the weights expect a different input normalisation than this "
                           "dataset's.")
    if not (at_chance or below_claim):
        return ImportCheck(status="ok", cause=None, alternatives=alternatives, suggestion=None, message=head + ".",
                           **common)
    vs = (f"the metadata claims {_pct(claimed_acc)}" if below_claim and claimed_acc is not None
          else f"that is chance level for {num_classes} classes ({_pct(p)} + {_pct(m)})")
    return ImportCheck(status="suspect", cause="dataset", alternatives=alternatives, suggestion=None, **common,
                       message=f"{head}; {vs}. No other activation or input scaling helps: check the dataset "
                               "(the weights may be trained on other data, classes or preprocessing).")


def run_health(meta: Mapping[str, Any]) -> dict | None:
    """The ``health`` entry of a run's metadata when the run is marked (``status`` not ``"ok"``), else ``None``.

    Training writes ``status`` (``"ok"``, ``"diverged"`` or ``"chance"``) and ``health`` (a
    :class:`Divergence` dict); an import check writes ``status="suspect"`` and an :class:`ImportCheck` dict.
    """
    status = meta.get("status")
    health = meta.get("health")
    if status in (None, "ok") or not isinstance(health, Mapping):
        return None
    return {"status": str(status), "message": str(health.get("message", status))}


__all__ = ["Divergence", "ImportCheck", "chance_band", "check_import", "check_training", "run_health"]
