"""`python -m bench.run [--quick] [--only NAME]...`: run the benchmarks, print each ratio, write the table."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    confirm_bench,
    cpu_bench,
    data_bench,
    floor_bench,
    loop_bench,
    peer_bench,
    scale_bench,
    search_bench,
    sweep_bench,
    warm_bench,
    workers_bench,
)
from bench.common import Outcome, machine, write_results

BENCHMARKS: dict[str, Callable[[bool], Outcome | list[Outcome]]] = {
    "peer": peer_bench.peer_optuna,  # the demo sweep against the plain Optuna script
    "floor": floor_bench.memory_floor,  # what Ray Tune adds at least to the script's memory, measured
    "harness": sweep_bench.harness_overhead,  # also gives the per-trial cost
    "loop": loop_bench.loop_efficiency,
    "data": loop_bench.data_path,
    "tracking": loop_bench.tracking_overhead,
    "concurrent": sweep_bench.concurrent_tracking,
    "frozen": loop_bench.frozen_phase,
    "cpu-layout": cpu_bench.channels_last,  # the demo's CNN in channels_last against NCHW, on a CPU
    "allocator": cpu_bench.allocator,  # the C allocator's thresholds fit() sets against glibc's own
    "arenas": cpu_bench.arenas,  # the demo sweep's memory with the Ray it starts capped at 2 malloc arenas
    "memory": sweep_bench.memory,
    "data-memory": data_bench.data_memory,
    "decode": data_bench.decode_throughput,
    "mapped-epoch": data_bench.mapped_epoch,
    "many-trials": scale_bench.many_trials,
    "workers": workers_bench.worker_scaling,
    "search": search_bench.search_efficiency,
    "warm": warm_bench.warm_start,  # a sweep warm-started from an earlier one against the same sweep cold
    "bias": confirm_bench.selection_bias,  # the best trial's value against its configuration re-trained
    "amp": loop_bench.mixed_precision,  # GPU only: nothing to measure on a CPU
    "fractional": sweep_bench.fractional_gpu,  # GPU only
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat: checks the benchmarks run")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)")
    parser.add_argument("--out", default="bench/RESULTS.md", help="the results table (default: bench/RESULTS.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {machine()}", flush=True)
    outcomes: list[Outcome] = []
    for name in args.only or list(BENCHMARKS):
        began = time.monotonic()
        found = BENCHMARKS[name](args.quick)
        print(f"{name}: {time.monotonic() - began:.0f} s", flush=True)
        if found == []:
            print(f"{name}: skipped (nothing to measure on this machine)", flush=True)
        for outcome in found if isinstance(found, list) else [found]:
            outcomes.append(outcome)
            print(f"{outcome.name}: {outcome.ratio:.3f} (goal {outcome.goal}: {'met' if outcome.met else 'MISSED'})"
                  f" - {outcome.detail}", flush=True)
    command = "make bench" if not args.quick and not args.only else "python -m bench.run " + " ".join(sys.argv[1:])
    write_results(outcomes, Path(args.out), command.strip(), args.quick)
    print(f"wrote {args.out}")
    return 0  # a missed goal is a finding, not a failure


if __name__ == "__main__":
    sys.exit(main())
