"""Regenerate every table and figure of figures/README.md: the one command.

    python -m analysis.run_all            # full mode, longest last (Table 1's MIQP rows); cached runs are reused
    python -m analysis.run_all --smoke    # every script's smoke mode (seconds each), outputs in a temp dir
    python -m analysis.run_all --only fig3_proxy_fidelity,table4_components

Runs are cached under runs/analysis/ (one directory per configuration, resumable), so a second call only replots.
"""

from __future__ import annotations

import argparse
import importlib
import time

from analysis.log import log

#: In run order: cheap first, Table 1 (MIQP) last.
SCRIPTS = ["fig5_9_error_reduction", "table4_components", "table5_k", "fig4_lambda", "table7_images",
           "fig3_proxy_fidelity", "table1_solvers"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="every script's smoke mode, outputs in a temp dir")
    p.add_argument("--only", default=None, help=f"comma-separated script names (default all: {','.join(SCRIPTS)})")
    p.add_argument("--out", default=None, help="figures dir of every script (default figures/, smoke: a temp dir)")
    p.add_argument("--runs", default=None, help="run cache of every script (default runs/analysis/, smoke: a temp dir)")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else SCRIPTS
    extra = (["--smoke"] if args.smoke else []) + (["--out", args.out] if args.out else []) + \
        (["--runs", args.runs] if args.runs else [])
    for name in names:
        t = time.perf_counter()
        log(f"== {name}")
        importlib.import_module(f"analysis.{name}").main(extra)
        log(f"== {name} done in {time.perf_counter() - t:.0f}s")


if __name__ == "__main__":
    main()
