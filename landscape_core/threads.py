"""The one thread policy: how many threads torch and the BLAS under NumPy/SciPy may use.

Two thread pools live in one process here: torch's (OpenMP + its statically linked MKL) and the
OpenBLAS that NumPy and SciPy load. Left alone, both start one thread per core, and a small
``np.linalg.eigh`` inside a loop of torch Hessian-vector products wakes OpenBLAS threads that then
spin against torch's (measured: HVPs in that stage took 20-27 ms instead of 8 ms). The policy:

- **torch**: ``$LANDSCAPE_TORCH_THREADS`` when set (``0`` keeps torch's own default); otherwise
  :func:`default_torch_threads` for the role. Command line and benchmarks use the cores other
  processes leave idle (all of them on a quiet machine, one on a busy one: under load a second
  OpenMP thread made HVPs 18x slower, see :func:`default_torch_threads` and ``bench/bench_threads.py``).
  The app serves each browser session from its own script thread, so on a machine with <= 2 cores it
  keeps one intra-op thread per computation (two sessions then run side by side instead of contending).
- **NumPy/SciPy BLAS**: one thread. The engine only hands it small problems (tridiagonal ``eigh``,
  ``k x k`` Gram matrices), where threads cost more than they give.

``apply_policy(role)`` is called once by the CLI (``landscape_core.cli.main``), the app
(``ui/cache.py``) and the benchmarks; :func:`blas_single` is the cheap context manager the Lanczos
loop wraps around its dense linear algebra (so the rule holds for library users who never called
``apply_policy``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Role = Literal["cli", "app", "bench"]
ENV_VAR = "LANDSCAPE_TORCH_THREADS"

_controller = None


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, falling back to ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def env_threads() -> int | None:
    """``$LANDSCAPE_TORCH_THREADS`` as an int (``None`` when unset or empty).

    Raises:
        ValueError: the variable is set to something that is not a non-negative integer.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_VAR}={raw!r} is not an integer (0 = torch's default)") from None
    if n < 0:
        raise ValueError(f"{ENV_VAR}={raw!r} must be >= 0 (0 = torch's default)")
    return n


def load_average() -> float:
    """The 1-minute load average (runnable processes), 0.0 where the platform has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def default_torch_threads(role: Role, cores: int | None = None, load: float | None = None) -> int:
    """Intra-op threads for torch when ``$LANDSCAPE_TORCH_THREADS`` is unset.

    Args:
        role: ``"cli"`` and ``"bench"`` use the cores other processes leave idle: ``cores - int(load)``,
            at least 1 (all of them on a quiet machine). ``"app"`` uses one thread per session on
            machines with <= 2 cores (concurrent sessions) and the idle cores otherwise.
        cores: override the detected core count (tests).
        load: override the 1-minute load average (tests).

    Why idle cores and not all cores: OpenMP threads meet at a barrier after every op, so one thread
    that the OS has descheduled for another process stalls the others. Measured on the 2-core machine
    at a load average of ~5.4 (``bench/bench_threads.py``): 2 threads took 18x (HVP), 4x (21x21
    surface) and 5x (training step) the time of 1 thread; on a quiet machine 2 threads are the faster
    choice (float32 matmul peak ~150 GFLOP/s on 1 thread, ~300 on 2).
    """
    if role not in ("cli", "app", "bench"):
        raise ValueError(f"unknown role {role!r}; choose 'cli', 'app' or 'bench'")
    c = usable_cores() if cores is None else max(1, int(cores))
    if role == "app" and c <= 2:
        return 1
    busy = load_average() if load is None else max(0.0, float(load))
    return max(1, min(c, c - int(busy)))


def _threadpool_controller():
    """threadpoolctl's controller, built once (it scans the loaded libraries)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def set_blas_threads(n: int = 1) -> None:
    """Limit the BLAS libraries NumPy/SciPy loaded (OpenBLAS/MKL as seen by threadpoolctl) to ``n`` threads.

    torch's own MKL is linked into torch and not affected (torch is governed by ``torch.set_num_threads``).
    """
    import numpy  # noqa: F401  (make sure NumPy's BLAS is loaded before scanning)

    global _controller
    _controller = None  # rescan: SciPy may have loaded its own OpenBLAS since
    _threadpool_controller().limit(limits=int(n), user_api="blas")


@contextmanager
def blas_single() -> Iterator[None]:
    """Within the block, NumPy/SciPy BLAS runs on one thread (restored afterwards; ~15 us overhead)."""
    with _threadpool_controller().limit(limits=1, user_api="blas"):
        yield


def apply_policy(role: Role = "cli") -> int:
    """Set torch's intra-op threads and the NumPy/SciPy BLAS threads for ``role``; returns torch's count.

    ``$LANDSCAPE_TORCH_THREADS`` overrides the torch count (``0`` keeps torch's default).
    """
    import torch

    want = env_threads()
    n = default_torch_threads(role) if want is None else want
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    set_blas_threads(1)
    return torch.get_num_threads()


class IntraOpThreads:
    """Surface evaluation runs chunks on parallel Python threads, each single-threaded inside torch:
    process-wide ``torch.set_num_threads(1)`` while any evaluation needs it (re-entrant, thread-safe)."""

    def __init__(self) -> None:  # torch is imported lazily here, like everywhere in this module
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = 1

    def configured(self) -> int:
        """The thread count the user configured (not our temporary 1)."""
        import torch

        with self._lock:
            return self._saved if self._depth else torch.get_num_threads()

    @contextmanager
    def single(self) -> Iterator[None]:
        import torch

        with self._lock:
            if self._depth == 0:
                self._saved = torch.get_num_threads()
                torch.set_num_threads(1)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    torch.set_num_threads(self._saved)


INTRA_OP = IntraOpThreads()
