"""One script per paper table/figure; see figures/README.md. ``python -m analysis.run_all [--smoke]`` runs them all."""
