"""One script per paper table/figure (see figures/README.md); ``python -m analysis.run_all [--smoke]`` runs them all.

Shared pieces, one job each: :mod:`~analysis.options` (the CLI, parsed into an ``Options``), :mod:`~analysis.runs`
(the run cache), :mod:`~analysis.problem_log` (per-segment records of a run), :mod:`~analysis.sweeps` (ablation
rows), :mod:`~analysis.layer_inputs`, :mod:`~analysis.forwards` (downstream forwards), :mod:`~analysis.smoke_miqp`
(the ``analysis-miqp`` solver of Table 1's smoke mode), :mod:`~analysis.optimum` (rows against the proven optimum),
:mod:`~analysis.stats`, :mod:`~analysis.plots`,
:mod:`~analysis.csvout` and :mod:`~analysis.log`.
"""
