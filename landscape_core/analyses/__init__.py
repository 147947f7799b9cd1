"""Run-level entry points: what the CLI, the app, reports and sweeps call.

Each module takes a run (a loaded :class:`~landscape_core.runs.Run`, a run folder path, or a ready
:class:`~landscape_core.functional.LossFunction`), resolves it to a loss closure through ONE resolver
(:func:`landscape_core.analyses.resolve.loss_function`), calls the pure estimators and measures of the
floor below, and returns a frozen dataclass with ``to_dict()`` / ``from_dict()``.

Modules: ``resolve`` (run / path / loss -> LossFunction), ``surface`` (compute_surface), ``hessian``
(analyze_hessian, planned_hvps, Ritz history), ``trajectory`` (project_trajectory), ``connectivity``
(connect_runs and the plane through A, B and the Bezier control point), ``flatness``
(flatness_summary), ``invariance`` (the function-preserving rescale demo), ``noise`` (gradient noise
scale of a run), ``study`` (estimator convergence and sample budget), ``cost`` (the one cost planner).
Submodules are imported on use (``from landscape_core.analyses.hessian import analyze_hessian``).
"""
