"""The benchmarks keep working: quick mode runs each one end to end and writes the table. Their ratios
are measurements, never test assertions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_every_benchmark_runs_in_quick_mode_writes_the_table_and_leaves_no_scratch_behind(tmp_path):
    out, scratch = tmp_path / "RESULTS.md", tmp_path / "scratch"
    scratch.mkdir()
    # the benchmarks' temporary folders go to TMPDIR; Ray's session stays in /tmp/ray, as usual
    env = {**os.environ, "TMPDIR": str(scratch), "RAY_TMPDIR": "/tmp"}
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(scratch.glob("hpsweep-bench-*")), "a benchmark left its sweeps' folder behind"
    table = out.read_text()
    for name in ("harness overhead", "per-trial cost", "loop efficiency", "data path", "tracking overhead",
                 "tracking at 8 concurrent trials", "frozen phase", "memory",
                 "demo sweep peak memory, 2 malloc arenas / glibc's default",
                 "lower bound on a Ray Tune sweep's peak memory / plain Optuna script",
                 "search efficiency", "warm start, trials to target",
                 "data memory, 1 trials", "decode on every core", "mapped-cache epoch",
                 "per-trial cost, 40 trials", "2 workers / 1 worker (1 CPU each)",
                 "demo sweep wall time / plain Optuna script", "demo sweep tail (s)",
                 "demo sweep wall time / Ray Tune by hand", "demo sweep start-up joining a running Ray (s)",
                 "demo sweep per-trial overhead (s)"):
        assert f"| {name} | " in table, name
    assert "quick mode" in table and "Machine: " in table


def test_per_trial_overhead_counts_each_slots_wait_between_trials_and_time_outside_epochs():
    from bench.peer_bench import per_trial_overhead

    # two slots: trials 1 and 2 open them; 3 takes the slot 1 freed at 4.0 (0.5 s later), 4 the slot 3
    # freed at 7.0 (0.25 s), though slot 2 had been free since 5.0; each trial spent 0.1 s outside its epochs
    spans = [(0.0, 4.0, 3.9), (0.2, 5.0, 4.7), (4.5, 7.0, 2.4), (7.25, 9.0, 1.65)]
    between, inside = per_trial_overhead(spans, at_once=2)
    assert between == pytest.approx((0.5 + 0.25) / 4)
    assert inside == pytest.approx(0.1)
    # one slot: every trial after the first waits for the one before it
    assert per_trial_overhead([(0.0, 1.0, 1.0), (1.5, 2.0, 0.5)], at_once=1) == pytest.approx((0.25, 0.0))


def test_search_efficiency_counts_trial_epochs_in_the_order_trials_ran():
    from bench.search_bench import epochs_to_target, spent_before_target, trials_to_target
    from hpsweep.track.records import TrialRecord

    def trial(number: int, *accuracies: float) -> TrialRecord:
        return TrialRecord(run_id=f"r{number}", number=number,
                           history=[{"val_accuracy": a} for a in accuracies])

    # listed out of order: trial 1 ran all 4 epochs, trial 2 was stopped after 1, trial 3 hits in epoch 2
    records = [trial(3, 0.5, 0.95, 0.97), trial(1, 0.2, 0.4, 0.6, 0.8), trial(2, 0.1)]
    assert epochs_to_target(records, 0.9) == 4 + 1 + 2
    assert spent_before_target(records, 0.9, epochs=4) == (4, 1)
    assert epochs_to_target(records, 0.99) is None
    assert trials_to_target(records, 0.9) == 3 and trials_to_target(records, 0.7) == 1
    assert trials_to_target(records, 0.99) is None


def test_random_search_cost_over_every_order_of_its_trials_matches_counting_each_order():
    from itertools import permutations

    from bench.search_bench import epochs_to_target, expected_epochs_to_target
    from hpsweep.track.records import TrialRecord

    curves = [(0.2, 0.5, 0.6), (0.3, 0.95, 0.9), (0.1, 0.2, 0.3), (0.4, 0.8, 0.92), (0.5, 0.6, 0.7)]
    orders = list(permutations(curves))
    counted = [
        epochs_to_target([TrialRecord(run_id=str(n), number=n, history=[{"val_accuracy": a} for a in curve])
                          for n, curve in enumerate(order)], 0.9)
        for order in orders
    ]
    records = [TrialRecord(run_id=str(n), number=n, history=[{"val_accuracy": a} for a in curve])
               for n, curve in enumerate(curves)]
    assert expected_epochs_to_target(records, 0.9) == pytest.approx(sum(counted) / len(orders))
    assert expected_epochs_to_target(records, 0.99) is None


def test_bootstrap_interval_over_seeds_brackets_the_pooled_ratio_and_narrows_when_seeds_agree():
    from bench.search_bench import pooled_interval

    agreeing = [(30.0, 100.0), (60.0, 200.0), (15.0, 50.0)]
    assert pooled_interval(agreeing) == pytest.approx((0.3, 0.3))
    spread = [(49, 205), (150, 638), (65, 91), (81, 133), (72, 72), (25, 25), (223, 502), (230, 351)]
    low, high = pooled_interval(spread)
    pooled = sum(a for a, _ in spread) / sum(b for _, b in spread)
    assert low < pooled < high
    assert pooled_interval(spread) == (low, high)  # seeded: the same interval every run


def test_a_search_with_foresight_spends_epochs_only_on_trials_that_end_near_the_target():
    from bench.search_bench import epochs_to_target, foresight_epochs_to_target
    from hpsweep.track.records import TrialRecord

    def trial(number: int, *accuracies: float) -> TrialRecord:
        return TrialRecord(run_id=f"r{number}", number=number,
                           history=[{"val_accuracy": a} for a in accuracies])

    # trial 1 is far below the target, trial 2 ends 1.5 points below it, trial 3 reaches it in epoch 3
    records = [trial(1, 0.5, 0.6, 0.7), trial(2, 0.95, 0.965, 0.96), trial(3, 0.9, 0.97, 0.98)]
    assert epochs_to_target(records, 0.98) == 3 + 3 + 3
    assert foresight_epochs_to_target(records, 0.98, within=0.02) == 3 + 3
    assert foresight_epochs_to_target(records, 0.98, within=0.01) == 3
    assert foresight_epochs_to_target(records, 0.99, within=0.0) is None


def test_asha_replayed_over_recorded_trials_stops_those_behind_and_counts_only_the_epochs_they_ran():
    from bench.search_bench import epochs_to_target, replay_asha
    from hpsweep.track.records import TrialRecord

    def trial(number: int, *accuracies: float) -> TrialRecord:
        return TrialRecord(run_id=f"r{number}", number=number,
                           history=[{"val_accuracy": a} for a in accuracies])

    # trial 1 has nothing to be compared with and runs all 3 epochs; trial 2 is behind it after epoch 1
    # and is stopped there, though it would have reached 0.95 in epoch 3; trial 3 stays ahead and hits
    records = [trial(1, 0.5, 0.6, 0.7), trial(2, 0.3, 0.9, 0.95), trial(3, 0.6, 0.8, 0.99)]
    assert epochs_to_target(records, 0.99) == 9
    assert replay_asha(records, 0.99, epochs=3) == 3 + 1 + 3
    assert epochs_to_target(records, 0.95) == 6
    assert replay_asha(records, 0.95, epochs=3) == 3 + 1 + 3  # the late bloomer's hit is lost
    # a grace period of 3 epochs lets every trial run in full: the count is random search's own
    assert replay_asha(records, 0.95, epochs=3, grace_period=3) == 6
    assert replay_asha(records, 0.999, epochs=3) is None
    # compared by a loss that ranks trial 2 ahead after epoch 1, ASHA keeps the late bloomer and stops
    # trial 3, whose accuracy led: the count is taken on accuracy all the same
    for record, losses in zip(records, [(1.0, 0.9, 0.8), (0.4, 0.3, 0.2), (2.0, 1.0, 0.1)], strict=True):
        for epoch, loss in zip(record.history, losses, strict=True):
            epoch["val_loss"] = loss
    assert replay_asha(records, 0.95, epochs=3, rank_by=("val_loss", "min")) == 3 + 3
    assert replay_asha(records, 0.99, epochs=3, rank_by=("val_loss", "min")) is None


def test_asha_ranking_trials_by_how_they_end_keeps_the_late_bloomer_it_would_otherwise_stop():
    from bench.search_bench import FINAL_BEST, replay_asha, with_final_best
    from hpsweep.track.records import TrialRecord

    records = [TrialRecord(run_id=f"r{n}", number=n, history=[{"val_accuracy": a} for a in accuracies])
               for n, accuracies in enumerate([(0.5, 0.6, 0.7), (0.3, 0.9, 0.95)], 1)]
    knowing = with_final_best(records)
    assert [e[FINAL_BEST] for r in knowing for e in r.history] == [0.7] * 3 + [0.95] * 3
    assert [e["val_accuracy"] for e in knowing[1].history] == [0.3, 0.9, 0.95]  # the curve itself is kept
    # ranked by accuracy at epoch 1, trial 2 is behind trial 1 and stopped; ranked by how it ends, it runs
    assert replay_asha(records, 0.95, epochs=3) is None
    assert replay_asha(knowing, 0.95, epochs=3, rank_by=(FINAL_BEST, "max")) == 3 + 3


def test_warm_start_counts_trials_until_one_reaches_the_target_lower_being_better():
    from bench.warm_bench import trials_to_target

    assert trials_to_target([1.4, 1.2, 1.1, 1.0], 1.15) == 3
    assert trials_to_target([1.1], 1.15) == 1 and trials_to_target([1.4, 1.3], 1.15) is None
