"""The one thread policy: roles, the environment override, and the BLAS limit under NumPy/SciPy."""

import pytest
import torch
from threadpoolctl import threadpool_info

from landscape_core import threads


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_roles_core_counts_and_load():
    assert threads.default_torch_threads("cli", cores=2, load=0.3) == 2  # quiet: all cores
    assert threads.default_torch_threads("cli", cores=2, load=1.5) == 1  # one core busy elsewhere
    assert threads.default_torch_threads("cli", cores=2, load=5.4) == 1  # never below 1
    assert threads.default_torch_threads("bench", cores=8, load=3.0) == 5
    assert threads.default_torch_threads("app", cores=2, load=0.0) == 1  # concurrent sessions
    assert threads.default_torch_threads("app", cores=1, load=0.0) == 1
    assert threads.default_torch_threads("app", cores=16, load=0.0) == 16
    assert 1 <= threads.default_torch_threads("cli") <= threads.usable_cores()
    with pytest.raises(ValueError, match="'server'"):
        threads.default_torch_threads("server")  # type: ignore[arg-type]


def test_environment_override(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(threads.ENV_VAR, "1")
        assert threads.apply_policy("cli") == 1 == torch.get_num_threads()
        monkeypatch.setenv(threads.ENV_VAR, "0")  # 0 keeps whatever torch has
        assert threads.apply_policy("cli") == 1
        monkeypatch.setenv(threads.ENV_VAR, "two")
        with pytest.raises(ValueError, match="'two'"):
            threads.apply_policy("cli")
        monkeypatch.setenv(threads.ENV_VAR, "-1")
        with pytest.raises(ValueError, match="'-1'"):
            threads.env_threads()
        monkeypatch.delenv(threads.ENV_VAR)
        assert threads.env_threads() is None
    finally:
        torch.set_num_threads(before)


def test_blas_single_limits_numpy_blas_and_restores():
    import numpy as np

    np.linalg.eigh(np.eye(3))  # make sure NumPy's BLAS is loaded
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library under NumPy")
    threads.set_blas_threads(2)
    assert set(_blas_threads()) == {2}
    with threads.blas_single():
        assert set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2}
    threads.set_blas_threads(1)
    assert set(_blas_threads()) == {1}


def test_cli_imports_only_the_named_command():
    from landscape_core.cli import _command_modules

    assert _command_modules(["hessian", "run", "--top-k", "5"]) == ["hessian"]
    assert _command_modules(["import", "x.pt"]) == ["import_"]
    everything = _command_modules([])
    assert {"hessian", "surface", "import_", "bench"} <= set(everything)
    assert _command_modules(["--help"]) == everything == _command_modules(["nonsense"])
