"""Fisher information operators: exact (in the model's output distribution), Monte-Carlo, and empirical.

With per-example negative log-likelihood ``l_i(theta) = -log p(y_i | f(theta, x_i))`` and outputs
``z_i = f(theta, x_i)``, three matrices are in use (Kunstner et al. 2019, "Limitations of the
empirical Fisher approximation"; Martens 2020):

- **Fisher** ``F = 1/N sum_i E_{y ~ p(.|z_i)} [g_i(y) g_i(y)^T]``, ``g_i(y) = grad_theta l_i``. With
  ``r_i(y) = d l_i / d z_i`` it is ``1/N sum_i J_i^T E[r r^T] J_i``, and for the softmax / Gaussian
  likelihoods behind cross-entropy and squared error ``E[r r^T]`` is the output Hessian, so the Fisher
  **equals the GGN** (``fisher`` here is :class:`~landscape_core.ggn.GGNOperator` under another name).
- **Monte-Carlo Fisher**: the expectation replaced by ``S`` labels sampled per example from the
  model's own predictive distribution (seeded, drawn once, so the operator is one fixed PSD matrix):
  ``F_mc = 1/N sum_i 1/S sum_s J_i^T r_is r_is^T J_i``; unbiased, ``E[F_mc] = F``.
- **Empirical Fisher** ``F_emp = 1/N sum_i g_i g_i^T`` with the *true* labels ``y_i``: the mean of
  per-example gradient outer products (not the Fisher; it can point elsewhere far from a minimum).

The engine's losses are batch means; the likelihoods they stand for: cross-entropy is the softmax
(categorical) NLL; ``0.5 * mean((z - y)^2)`` over ``c`` outputs per example is the NLL of a Gaussian
with covariance ``c I`` (so ``r = (z - y) / c`` and ``E[r r^T] = I / c``).

Batches are weighted by size, so all three are full-dataset averages over ``N`` examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.func import grad, vmap

from .determinism import checked
from .functional import LossFunction
from .ggn import GGNOperator, JacobianMode, OutputSpaceOperator

EmpiricalMethod = Literal["per_example", "output"]

#: Largest number of stored per-example gradient entries (N x dim) the empirical Fisher keeps in memory
#: (64 Mi entries: 256 MB in float32); above it per-example gradients are recomputed at every matvec.
CACHE_ENTRIES = 1 << 26


class FisherOperator(GGNOperator):
    """The Fisher in the model's output distribution: identical to the GGN for cross-entropy / squared error."""

    kind = "fisher"


def _outer_mean(r: Tensor, u: Tensor) -> Tensor:
    """``1/n sum_i 1/S sum_s r_is (r_is . u_i)`` for ``r``: ``(n, S, *out)``, ``u``: ``(n, *out)``."""
    n, s = r.shape[0], r.shape[1]
    rf = r.reshape(n, s, -1)
    coef = torch.einsum("nsk,nk->ns", rf, u.reshape(n, -1))
    return (torch.einsum("ns,nsk->nk", coef, rf) / (n * s)).reshape(u.shape)


class MCFisherOperator(OutputSpaceOperator):
    """Monte-Carlo Fisher: ``1/N sum_i 1/S sum_s J_i^T r_is r_is^T J_i`` with sampled labels.

    Args:
        loss_fn, params, names, dtype, mode: as for :class:`~landscape_core.ggn.GGNOperator`.
        samples: labels drawn per example (``S``).
        seed: the labels' seed; they are drawn once per batch at the first product and kept.
    """

    kind = "fisher-mc"

    def __init__(
        self,
        loss_fn: LossFunction,
        params: Mapping[str, Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        mode: JacobianMode = "auto",
        samples: int = 1,
        seed: int = 0,
    ) -> None:
        if not (isinstance(samples, int) and samples >= 1):
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        super().__init__(loss_fn, params, names=names, dtype=dtype, mode=mode)
        if self.loss_fn.loss_name not in ("cross_entropy", "mse"):
            raise ValueError(f"no sampling distribution for loss {self.loss_fn.loss_name!r}")
        self.samples, self.seed = samples, seed
        self._gen = torch.Generator().manual_seed(seed)
        self._r: dict[int, Tensor] = {}

    def _sampled_residuals(self, b: int, z: Tensor, yb: Tensor) -> Tensor:
        """``r_is = d l_i / d z_i`` at labels sampled from the model, ``(n, S, *out)`` (cached per batch)."""
        if b in self._r:
            return self._r[b]
        n, s = z.shape[0], self.samples
        if self.loss_fn.loss_name == "cross_entropy":
            p = torch.softmax(z.double(), dim=-1).cpu()
            labels = torch.multinomial(p, s, replacement=True, generator=self._gen)  # (n, S)
            onehot = torch.nn.functional.one_hot(labels, z.shape[-1]).to(p.dtype)
            r = p.unsqueeze(1) - onehot  # d(-log softmax_y)/dz = p - e_y
        else:
            c = z.numel() // n  # outputs per example: Gaussian NLL with covariance c I
            eps = torch.randn((n, s, *z.shape[1:]), generator=self._gen, dtype=torch.float64)
            r = -eps / c**0.5  # (z - y) / c with y = z + sqrt(c) eps
        self._r[b] = r.to(device=z.device, dtype=z.dtype)
        return self._r[b]

    def _output_matvec(self, b: int, z: Tensor, yb: Tensor, u: Tensor) -> Tensor:
        return _outer_mean(self._sampled_residuals(b, z, yb), u)


class EmpiricalFisherOperator(OutputSpaceOperator):
    """Empirical Fisher ``1/N sum_i g_i g_i^T`` with the true labels (mean of per-example gradient outer products).

    Args:
        loss_fn, params, names, dtype, mode: as for :class:`~landscape_core.ggn.GGNOperator`.
        method: ``"per_example"``: per-example gradients ``G_b`` (``n_b x dim``) by
            ``torch.func.vmap(grad(l_i))``, product ``sum_b 1/N G_b^T (G_b v)`` (kept in memory when
            ``N * dim <= CACHE_ENTRIES``); ``"output"``: the same matrix as ``J^T (r r^T) J`` with
            ``r_i = d l_i / d z_i`` (one JVP and one VJP per batch; works where vmap does not).
    """

    kind = "empirical-fisher"

    def __init__(
        self,
        loss_fn: LossFunction,
        params: Mapping[str, Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        mode: JacobianMode = "auto",
        method: EmpiricalMethod = "per_example",
    ) -> None:
        if method not in ("per_example", "output"):
            raise ValueError(f"unknown empirical-Fisher method {method!r}; choose 'per_example' or 'output'")
        super().__init__(loss_fn, params, names=names, dtype=dtype, mode=mode)
        self.method = method
        self._cache: list[Tensor] | None = [] if self.loss_fn.n * self.dim <= CACHE_ENTRIES else None

    # -- output route: r_i = n_b * d(batch-mean loss)/dz_i ------------------------------------
    def _output_matvec(self, b: int, z: Tensor, yb: Tensor, u: Tensor) -> Tensor:
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            (r,) = torch.autograd.grad(self.loss_fn._criterion(zz, yb), zz)
        r = (r * z.shape[0]).unsqueeze(1)  # per-example gradients w.r.t. outputs, (n, 1, *out)
        return _outer_mean(r, u)

    # -- per-example gradients by vmap --------------------------------------------------------
    def per_example_gradients(self, Xb: Tensor, yb: Tensor) -> Tensor:
        """``G_b``: the ``n_b x dim`` matrix of per-example loss gradients (rows in ``names`` order)."""
        lf, fixed = self.loss_fn, self._fixed

        def one(p: dict, x: Tensor, y: Tensor) -> Tensor:
            return lf.batch_loss({**fixed, **p}, x.unsqueeze(0), y.unsqueeze(0))

        g = vmap(grad(one), in_dims=(None, 0, 0))(self._var, Xb, yb)
        return torch.cat([g[k].reshape(len(yb), -1) for k in self._var], dim=1).detach()

    def _apply(self, v: Tensor) -> Tensor:
        if self.method == "output":
            return super()._apply(v)
        acc = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        for b, (Xb, yb, _) in enumerate(self.loss_fn.iter_batches()):
            if self._cache is not None and b < len(self._cache):
                G = self._cache[b]
            else:
                G = self.per_example_gradients(Xb, yb)
                if self._cache is not None:
                    self._cache.append(G)
            acc.add_(G.T @ (G @ v), alpha=1.0 / self.loss_fn.n)  # w_b / n_b = 1 / N
        return acc


def fisher_operator(
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    mode: JacobianMode = "auto",
    check: bool = True,
) -> FisherOperator:
    """The exact Fisher (= GGN for cross-entropy and squared error) as an operator."""
    return checked(FisherOperator(loss_fn, params, names=names, dtype=dtype, mode=mode), check)


def mc_fisher_operator(
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    mode: JacobianMode = "auto",
    samples: int = 1,
    seed: int = 0,
    check: bool = True,
) -> MCFisherOperator:
    """The Monte-Carlo Fisher with ``samples`` model-sampled labels per example (seeded)."""
    return checked(MCFisherOperator(loss_fn, params, names=names, dtype=dtype, mode=mode, samples=samples, seed=seed), check)


def empirical_fisher_operator(
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    method: EmpiricalMethod = "per_example",
    mode: JacobianMode = "auto",
    check: bool = True,
) -> EmpiricalFisherOperator:
    """The empirical Fisher (mean of per-example gradient outer products, true labels) as an operator."""
    return checked(EmpiricalFisherOperator(loss_fn, params, names=names, dtype=dtype, mode=mode, method=method), check)
