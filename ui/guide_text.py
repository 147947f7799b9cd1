"""The Guide's text: the ideas behind every page in plain words, with formulas, one section per anchor.

Each entry of :data:`SECTIONS` is ``(anchor, title, markdown)``. Other pages link to a section with
``ui.common.guide_link(anchor, label)``; the anchors below are the stable public names.
"""

from __future__ import annotations

import json

import streamlit.components.v1 as components

from .guide_beyond import SECTIONS as BEYOND_SECTIONS  # issue 15: GGN / Fisher, grokking

SECTIONS: list[tuple[str, str, str]] = [
    ("sharpness", "Sharpness and λ_max", r"""
Near a minimum $\theta^*$ the loss looks like a bowl: a second-order Taylor expansion gives

$$L(\theta^* + \delta) \approx L(\theta^*) + \tfrac12\, \delta^\top H \delta, \qquad H = \nabla^2 L(\theta^*).$$

The Hessian $H$ says how fast the loss rises in every direction. Its largest eigenvalue
$\lambda_{\max}$ is the curvature of the steepest direction: **a large $\lambda_{\max}$ is a sharp
minimum**, a small one a flat minimum. The trace $\operatorname{tr} H = \sum_i \lambda_i$ adds up the
curvature of all directions, so it also counts how many directions are steep.

Why $2/\eta$? Gradient descent with learning rate $\eta$ on a quadratic with curvature $\lambda$
multiplies the distance to the minimum by $(1 - \eta\lambda)$ every step. That shrinks only while
$|1-\eta\lambda| < 1$, that is while $\lambda < 2/\eta$. A minimum sharper than $2/\eta$ cannot hold
the optimizer: it bounces out. Full-batch training is often seen to climb until $\lambda_{\max}$ reaches
about $2/\eta$ and then hover there (the "edge of stability", Cohen et al. 2021). The Train page draws
this line when you track sharpness.
"""),
    ("sgd-noise", "Why SGD noise prefers flat minima", r"""
A mini-batch gradient is the full gradient plus noise: $g_B = \nabla L + \xi$ with
$\operatorname{Cov}[\xi] \approx \tfrac{1}{B}\,\Sigma$, where $\Sigma$ is the per-example gradient
covariance and $B$ the batch size. Near a minimum $\Sigma$ tends to be aligned with, and to scale like,
the Hessian. So in a sharp basin the same noise kicks the weights up a steep wall, raising the loss by
about $\tfrac{\eta}{2B}\operatorname{tr}(H\Sigma)$ on average; in a flat basin the same kicks cost little.

Two consequences you can see in the app: a larger learning rate or a smaller batch (more noise per
step, temperature $\propto \eta/B$) makes SGD settle in flatter regions, and a sharp minimum that plain
gradient descent would accept can be unstable for SGD. SAM goes one step further and *asks* for
flatness explicitly: it minimises $\max_{\|\epsilon\|\le\rho} L(\theta+\epsilon)$, approximated by one
ascent step $\epsilon = \rho\, g/\|g\|$ before each descent step (Foret et al. 2021). ASAM scales that
radius per weight so that it ignores rescalings of the network (Kwon et al. 2021).

Flatness is not the whole story: it correlates with generalisation in many sweeps, but it can be
changed by reparametrising the network without changing its function (see
[flatness and invariance](#flatness)).
"""),
    ("hvp", "Hessian-vector products", r"""
A network with $n = 10^4$ to $10^7$ weights has an $n\times n$ Hessian: far too big to store. Every
curvature method here only needs products $Hv$, and those cost about two gradient evaluations:

$$Hv = \nabla_\theta \big( \nabla_\theta L(\theta)^\top v \big)
\quad\text{(reverse over reverse)},\qquad
Hv = \tfrac{d}{dt}\, \nabla L(\theta + t v)\big|_{t=0}\quad\text{(forward over reverse)}.$$

Both give the exact product (not a finite difference). The engine evaluates the loss on a fixed,
seeded subset of examples in evaluation mode (BatchNorm uses running statistics, no dropout), so $H$ is
a fixed symmetric matrix and repeated products agree. For small models the app can also build the dense
Hessian in float64 and compare.
"""),
    ("lanczos", "Power iteration vs Lanczos", r"""
**Power iteration** repeats $v \leftarrow Hv/\|Hv\|$. It converges to the eigenvector of the eigenvalue
with the largest *magnitude*, at a rate set by the gap ratio $|\lambda_2/\lambda_1|$; when the top two
eigenvalues are close it needs many products, and a large negative eigenvalue can win instead.

**Lanczos** keeps every vector it has seen. After $k$ products it has an orthonormal basis $Q_k$ of the
Krylov space $\{v, Hv, \dots, H^{k-1}v\}$ and a small tridiagonal matrix $T_k = Q_k^\top H Q_k$ whose
eigenvalues (Ritz values) approximate the extreme eigenvalues of $H$, both ends at once, typically in
far fewer products than power iteration for the same accuracy. In floating point the basis loses
orthogonality once a Ritz value converges, and the iteration then finds the same eigenvalue again:
spurious duplicates called **ghost eigenvalues**, which would make a single outlier look like several.
The engine therefore re-orthogonalises fully against all previous vectors (cheap for the few dozen
vectors used), so every Ritz value it reports is a distinct eigenvalue. Converged
means the residual $\|H y - \theta y\|$ is small relative to $|\theta|$.
"""),
    ("hutchinson", "Hutchinson's trace and Hutch++", r"""
For a random vector $z$ with $\mathbb{E}[zz^\top] = I$ (e.g. random signs),

$$\mathbb{E}\big[z^\top H z\big] = \operatorname{tr}(H),$$

so averaging $z_i^\top H z_i$ over $m$ probes gives an unbiased estimate with standard error
$\hat\sigma/\sqrt{m}$; the app always shows that error bar. The error shrinks like $1/\sqrt{m}$.

**Hutch++** (Meyer et al. 2021) spends a third of the budget finding the dominant subspace $Q$
(from $H S$ for random $S$), takes its trace exactly, and uses Hutchinson only on the rest:
$\operatorname{tr}(H) = \operatorname{tr}(Q^\top H Q) + \operatorname{tr}\big((I-QQ^\top)H(I-QQ^\top)\big)$.
When a few large eigenvalues dominate, as in trained networks, the error falls like $1/m$ instead.

**The Gauss-Newton control variate** (the default for plain MLPs). The Hessian splits as
$H = G + R$: the Gauss-Newton part $G = \sum_n J_n^\top H_{\text{out},n} J_n$ and a residual $R$ that
carries the second derivatives of the network and vanishes where the model fits the data. For a
linear layer the trace of $G$ is *exact* from per-example quantities
($\|\delta\|^2 \|x\|^2$ for each output direction), so only $\operatorname{tr}(R)$ is estimated:
$\operatorname{tr}(H) = \operatorname{tr}(G) + \mathbb{E}[z^\top R z]$. On the shipped digits network
one probe of $R$ spreads about 2% of the trace, against about 14% for a probe of $H$: a 1% standard
error takes 8 probes instead of about 200.
"""),
    ("spectral-density", "The spectral density", r"""
Stochastic Lanczos quadrature runs a short Lanczos from a few random starting vectors and turns each
tridiagonal $T_k$ into nodes (its eigenvalues) and weights (squared first components of its
eigenvectors). Smoothing these with a Gaussian gives an estimate of the whole eigenvalue density
$\phi(t) = \frac1n \sum_i \delta(t-\lambda_i)$. Trained networks typically show a bulk near zero
and a few outliers (about one per class); the outliers are what $\lambda_{\max}$ and the top-$k$
eigenvalues measure. The width of the Gaussian is a display choice, not a property of the network.
"""),
    ("filter-normalisation", "Filter normalisation and why it matters", r"""
A loss-surface plot shows $f(\alpha,\beta) = L(\theta^* + \alpha d_1 + \beta d_2)$ for two directions
$d_1, d_2$. With plain random Gaussian directions the picture depends on the scale of the weights:
networks with ReLU (and BatchNorm) can rescale a layer's weights without changing the function, so the
same function can look sharp or flat depending on that arbitrary scale.

Filter normalisation (Li et al. 2018) rescales each filter (each output unit's row) of the random
direction to the norm of the corresponding filter of the weights:

$$d_{i,j} \leftarrow \frac{d_{i,j}}{\|d_{i,j}\|}\,\|\theta_{i,j}\|.$$

A step $\alpha = 1$ then changes every filter by about its own size, whatever the scale, so surfaces of
different networks become comparable. Biases and BatchNorm parameters (1-D tensors) are usually left
at zero in the direction. This is why the home page can put SGD, SAM and Adam surfaces on one colour
scale. Use one shared scale when comparing pictures; separate scales make every minimum look alike.
"""),
    ("pca-trajectories", "What a PCA trajectory plot can and cannot show", r"""
Training visits snapshots $\theta_0, \dots, \theta_T$. PCA of the differences $\theta_t - \theta_T$ finds
the two directions along which the path moved most; plotting the projected path on the loss surface of
that plane shows the route to the minimum. The percentages on the axes are the share of the path's
variance each direction explains.

What it **can** show: the overall shape of the route (straight descent, a turn, oscillation across a
valley), and roughly where the optimizer slowed down.

What it **cannot**: random high-dimensional walks look smooth and curved in PCA (the first components of
a random walk are cosine-shaped, Antognini and Sohl-Dickstein 2018), so a nice arc is not proof of
structure. Every point is off the plane by some residual, so the loss drawn under the path is the loss
*in the plane*, not the true loss at the snapshot; the Trajectory page shows both and the residual.
Comparing several optimizers needs **one shared basis** (the Compare page uses the plane through the
final points), otherwise each picture has its own axes.
"""),
    ("mode-connectivity", "Mode connectivity", r"""
Two independently trained networks usually have a high loss barrier on the straight line between them,
$\theta(t) = (1-t)\theta_A + t\theta_B$. Yet a simple curve often connects them at low loss: a quadratic
Bezier curve $\theta(t) = (1-t)^2\theta_A + 2t(1-t)\,c + t^2\theta_B$ with a trained middle point $c$
(Garipov et al. 2018; Draxler et al. 2018). The barrier is

$$\max_t L(\theta(t)) - \max\big(L(\theta_A), L(\theta_B)\big).$$

With BatchNorm, points along a path need their running statistics recomputed, or the barrier is
overstated. Runs that share a start and part of training (for instance SGD and SAM from the same
initialisation) are often linearly connected.
"""),
    ("flatness", "Flatness measures and reparametrisation invariance", r"""
"Flat" can mean several things: a small $\lambda_{\max}$ or trace; a small loss increase under random
perturbations of size $\sigma$, $\mathbb{E}_\epsilon[L(\theta+\epsilon)] - L(\theta)$; or a small
worst-case increase within a radius, $\max_{\|\epsilon\|\le\rho} L(\theta+\epsilon) - L(\theta)$
($\epsilon$-sharpness, Keskar et al. 2017).

Dinh et al. (2017) showed that for ReLU networks you can multiply one layer by $\alpha$ and the next by
$1/\alpha$: the function, and every prediction, stays the same, but the Hessian changes and
$\lambda_{\max}$ can be made as large as you like. So plain flatness is not a property of the function.
**Adaptive** (scale-invariant) measures fix this by measuring perturbations relative to each weight,
$\epsilon_i \propto |\theta_i|$ (Kwon et al. 2021), or by normalising per filter; they do not change
under such rescalings. The Flatness page shows the rescaling experiment side by side.
"""),
    ("gradient-noise", "Gradient noise scale", r"""
How big a batch is worth it? McCandlish et al. (2018) define the simple noise scale

$$B_{\text{simple}} = \frac{\operatorname{tr}(\Sigma)}{\|G\|^2},$$

the ratio of the per-example gradient variance to the squared true gradient. Below
$B_{\text{simple}}$, doubling the batch nearly halves the number of steps needed (noise dominates);
well above it, larger batches waste computation (the gradient is already accurate). The app estimates
both terms from per-example (or small-batch) gradients with an error bar, and shows how the estimate
depends on the batch sizes used to measure it. The noise scale usually grows during training as the
true gradient shrinks.
"""),
    ("reading-plots", "How to read each plot", r"""
- **Loss surface (3-D / contour)**: height and colour are the loss at $\theta^*+\alpha d_1+\beta d_2$;
  the star is the trained weights. Compare pictures only on a shared colour scale, and prefer the log
  scale to see the floor of the basin. Axis units are "one filter's size" for filter-normalised
  directions.
- **1-D slices**: the same along one direction; a wide bowl is flat along that direction only.
- **Spectrum / top eigenvalues**: bars are Ritz values with their residuals; unconverged values are
  marked. **Density**: the bulk near zero and the outliers; the smoothing width is cosmetic.
- **Trace with error bar**: the mean of the probes and one standard error; the running-mean plot shows
  whether more probes would help.
- **Trajectory**: the path projected on the PCA (or shared) plane; check the explained variance and
  the off-plane residual before trusting its shape.
- **Connectivity**: loss along the straight line and the curve between two runs; the barrier is the
  height of the hump above the higher endpoint.
- **Flatness profiles**: average loss increase against perturbation size with confidence intervals;
  lower and wider is flatter.
- **Noise scale**: $B_{\text{simple}}$ with its error bar against the batch sizes used to measure it.
- **Learning curves**: train (solid) and test (dashed); the gap between them is the generalisation gap.
"""),
]
SECTIONS.extend(BEYOND_SECTIONS)  # issue 15

ANCHORS: tuple[str, ...] = tuple(a for a, _, _ in SECTIONS)


_SCROLL_JS = """
<script>
// Scroll the Guide to a section once the page has settled: the formulas above it are typeset after the
// first paint and push it down, so a single jump (the browser's own #anchor) lands far above it.
const doc = window.parent.document;
const want = %s || decodeURIComponent((window.parent.location.hash || "").slice(1));
if (want) {
  let n = 0, last = null;
  const t = setInterval(() => {
    const el = doc.getElementById(want);
    n += 1;
    if (el) {
      const top = el.getBoundingClientRect().top;
      el.style.scrollMarginTop = "70px";
      if (last === null || Math.abs(top - 70) > 2) el.scrollIntoView({block: "start"});
      last = top;
    }
    if (n > 25) clearInterval(t);
  }, 120);
}
</script>
"""


def scroll_to_section(anchor: str | None) -> None:
    """Scroll the page to the section ``anchor`` (from ``?section=``, else the URL's ``#fragment``).

    Only known anchors are passed to the script (anything else is ignored), as a JSON string literal.
    """
    known = {a for a, _, _ in SECTIONS}
    value = json.dumps(anchor if anchor in known else "")
    components.html(_SCROLL_JS % value, height=0)
