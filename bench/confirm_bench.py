"""Selection bias: how much better a sweep's best trial looked than its configuration trains, measured by
`promote --confirm` on the warm-start benchmark's search workload (an MLP regressing make_friedman1).

Per sampler seed: a TPE sweep, then its top configurations re-trained with fresh seeds through the same
confirmation code `hpsweep promote --confirm` runs, with --dry-run (nothing registered). The ratio is
the best trial's val_rmse over its seeds' mean val_rmse: below 1, the winner looked better than it is.
It is a measurement with no goal: the point of confirming is that it is not 1."""

from __future__ import annotations

import logging
import os
import statistics

from bench.common import Outcome, scratch_folder
from bench.warm_bench import _friedman_csv, _raw
from hpsweep.spec import validate_data


def selection_bias(quick: bool, seeds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> Outcome:
    import ray

    from hpsweep.registry.promote import target
    from hpsweep.sweep.confirm import Request, confirm
    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep
    from hpsweep.sweep.quiet import quiet

    trials, epochs, top, retrain = (3, 2, 2, 2) if quick else (20, 12, 3, 3)
    seeds = (1,) if quick else seeds
    folder = scratch_folder()
    csv = _friedman_csv(folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ratios, notes = [], []
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        for seed in seeds:
            name = f"bench-bias-{seed}"
            raw = _raw(name, csv, trials, epochs, seed, None)
            spec = validate_data(raw, str(folder / f"{name}.yaml"), base_dir=folder)
            run_sweep(spec, plan_sweep(spec, raw, storage=str(folder / "results"), uri=uri), "bench")
            request = Request(top, retrain, storage=str(folder / "results"))
            with quiet():
                decision = confirm(target(name, None, None, None, uri), request, dry_run=True)
            numbers = decision.confirmation or {}
            best = next(c for c in numbers["configurations"] if c["rank"] == 1)
            ratios.append(best["val_original"] / best["val_mean"])
            spread = statistics.stdev(s["val"] for s in best["seeds"])
            chosen = numbers["chosen_rank"]
            notes.append(f"sampler seed {seed}: best trial val_rmse {best['val_original']:.4f}, its {retrain} seeds "
                         f"{best['val_mean']:.4f} (sd {spread:.4f}); bias {numbers['selection_bias']:+.4f}; "
                         f"configuration #{chosen} went forward")
    finally:
        ray.shutdown()
    ratio = statistics.fmean(ratios)
    detail = (f"the best trial's val_rmse over its re-trained seeds' mean, averaged over {len(seeds)} sweeps (below 1: "
              f"the winner looked better than its configuration trains); MLP on make_friedman1, TPE, {trials} trials "
              f"of {epochs} epochs, top {top} re-trained with {retrain} fresh seeds each; " + "; ".join(notes))
    return Outcome("selection bias of the best trial", ratio, "measured (no goal)", True, detail)
