"""Guide sections of issue 15: the curvature matrices beyond the Hessian (GGN, Fisher, empirical Fisher) and
the grokking lab. ``ui.guide_text`` appends :data:`SECTIONS` to its own (same ``(anchor, title, markdown)``
layout); the Curvature page links ``ggn-fisher``, the Train page's grokking lab links ``grokking``."""

from __future__ import annotations

SECTIONS: list[tuple[str, str, str]] = [
    ("ggn-fisher", "GGN, Fisher and empirical Fisher", r"""
Write the network as $f(x;\theta) = z$ (the logits) and the loss of one example as $\ell(z, y)$; the
training loss is $L(\theta) = \frac1n \sum_i \ell(f(x_i;\theta), y_i)$. With the Jacobian
$J_i = \partial z_i / \partial\theta$ the chain rule splits the Hessian in two:

$$H = \frac1n \sum_i J_i^\top\, \nabla_z^2 \ell_i\, J_i \;+\; \frac1n \sum_i \sum_k
\frac{\partial \ell_i}{\partial z_k}\, \nabla_\theta^2 z_{ik}.$$

- **Generalised Gauss-Newton** $G = \frac1n\sum_i J_i^\top H_{\text{out},i} J_i$ keeps the first term only
  ($H_{\text{out}} = \nabla_z^2\ell$; for softmax cross-entropy $H_{\text{out}} = \operatorname{diag}(p) - pp^\top$).
  It is **positive semi-definite** whenever $\ell$ is convex in $z$, and it needs no second derivatives of
  the network: $Gv = J^\top (H_{\text{out}} (J v))$, one forward-mode (JVP) and one reverse-mode (VJP) pass.
  **$G = H$** when the network is linear in $\theta$ (the second term vanishes: $\nabla^2_\theta z = 0$) or
  when every residual $\partial\ell/\partial z$ is zero (a perfect fit). The difference $H - G$ is exactly
  the residual term, and it is what can make $H$ indefinite.
- **Fisher** $F = \frac1n\sum_i \mathbb E_{\hat y\sim p_\theta(\cdot|x_i)}\big[\nabla_\theta \log p_\theta(\hat y|x_i)
  \nabla_\theta \log p_\theta(\hat y|x_i)^\top\big]$: the labels are drawn **from the model**. For the
  exponential-family losses used here (softmax cross-entropy) $F = G$ exactly (Martens 2020). The
  Monte-Carlo Fisher replaces the expectation by a few sampled labels per example (seeded): unbiased, PSD,
  noisier.
- **Empirical Fisher** $\tilde F = \frac1n \sum_i g_i g_i^\top$ with $g_i = \nabla_\theta \ell(f(x_i), y_i)$,
  the gradients at the **true** labels. It is cheap (per-example gradients) and PSD, but **it is not the
  Fisher**: it replaces the model's label distribution by the data's. At a minimum that fits the data,
  $g_i \to 0$, so $\tilde F \to 0$ while $F$ and $H$ stay large; away from a minimum it mixes in the mean
  gradient $\nabla L \nabla L^\top$. Its spectrum is not a curvature estimate, and preconditioning with
  it behaves differently from natural gradient (Kunstner, Hennig & Balles 2019).

On the Curvature page, *Compare curvature matrices* overlays their top eigenvalues (or SLQ densities) on
the same data subset: near a well-fitted minimum the Hessian, GGN and Fisher agree on the top outliers;
the Hessian's negative part and the empirical Fisher's collapse show where they differ.
"""),
    ("grokking", "Grokking: delayed generalisation", r"""
Train a small Transformer on $a + b \bmod p$ with half of the $p^2$ pairs, full-batch AdamW and a strong
weight decay ($\lambda = 1$). The training accuracy reaches 100% quickly: the network has **memorised**
the table. The test accuracy stays near chance for a long time, then **jumps** to ~100%: the network has
found the algorithm (Power et al. 2022; Nanda et al. 2023 show it is a Fourier-feature circuit).

What to look at in the lab's curves:

- **The delay**: the step where train accuracy saturates ($\ge 99\%$) and the step where test accuracy
  jumps ($\ge 95\%$). The log step axis shows both phases at once.
- **The weight norm** $\|\theta\|$. Decoupled weight decay shrinks every weight by $(1 - \eta\lambda)$ per
  step, so only what the loss keeps re-growing survives. The memorising solution needs large weights; the
  generalising circuit fits the data with a smaller norm. The norm falls through the delay and the test
  accuracy jumps as it does. With little or no weight decay the jump comes much later or not at all
  (Power et al. 2022; Liu et al. 2023, "Omnigrok").
- **Sharpness** $\lambda_{\max}$, measured every 100 steps: it changes as the solution moves from memorising
  to generalising; compare it with where the jump happens, not with a single value.

Why full batch? The effect is not driven by gradient noise; one step per epoch also makes "step" mean the
same thing on every axis. If a run does not grok in its budget, the lab says so ("not reached"): train
longer or with a larger training fraction.
"""),
]
