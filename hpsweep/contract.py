"""The MLflow contract: every name that two parts of hpsweep, or a user's own query, share through MLflow.

Tag names, run names, artifact paths, the reasons a trial stops and the one rule for "this trial counts
as a result" are defined here once and imported everywhere. It sits at the bottom of the package (it
imports nothing) because the training loop, the trial worker, the tracker, the report and promotion all
speak these names, and the loop sits below tracking.
"""

from __future__ import annotations

import math
from enum import StrEnum

# ---------------------------------------------------------------- tags

SWEEP_TAG = "hpsweep.sweep_id"  #: on the parent run and every trial run of a sweep
TRIAL_TAG = "hpsweep.trial_id"  #: Ray Tune's trial id, on each trial run
PARENT_TAG = "mlflow.parentRunId"  #: MLflow's nesting: set on trial runs, naming the sweep's parent run
ROLE_TAG, SWEEP_ROLE = "hpsweep.role", "sweep"  #: on parent runs only, so a query finds them without the trials
#: the role of a confirmation's parent run, nested under the sweep it confirms and never taken for that sweep
CONFIRMATION_ROLE = "confirmation"
SWEEP_NAME_TAG = "hpsweep.sweep_name"
TRAINABLE_TAG = "hpsweep.trainable"
SOURCE_TAG = "hpsweep.source"  #: the sweep file the sweep was started from
BASE_DIR_TAG = "hpsweep.base_dir"  #: the folder relative data paths of the sweep resolve against
DATA_CACHE_TAG = "hpsweep.data_cache"  #: the folder the sweep cached its decoded data in
NUM_TRIALS_TAG = "hpsweep.num_trials"  #: the trial budget a resume set (params cannot change)
STOP_TAG = "hpsweep.stop_reason"
ERROR_TAG = "hpsweep.error"
BEST_TRIAL_TAG = "hpsweep.best_trial_id"
BEST_RUN_TAG = "hpsweep.best_run_id"
BEST_MODEL_TAG = "hpsweep.best_model_uri"  #: on the parent: the best trial's logged model
MODEL_URI_TAG = "hpsweep.model_uri"  #: on the best trial's run: its logged model
PROMOTION_TAG = "hpsweep.promotion"  #: prefix; `hpsweep.promotion.<alias>` on the parent run
#: on a confirmation's parent run (`promote --confirm`): the sweep whose best configurations it re-trains
CONFIRMS_TAG = "hpsweep.confirms"
CONFIRM_KEY_TAG = "hpsweep.confirm_key"  #: which configurations and seeds the confirmation re-trains
NOTE_TAG = "mlflow.note.content"
#: on the experiment: MLflow 3's UI opens a "custom_model_development" experiment on its runs
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
GIT_COMMIT_TAG = "mlflow.source.git.commit"

# tags on registered model versions
DECISION_TAG = "hpsweep.decision"
TEST_TAG = "hpsweep.test_metric"  #: `<metric>=<value>` of the version's test evaluation
TEST_MODE_TAG = "hpsweep.test_mode"  #: min or max: how TEST_TAG's values compare
FINGERPRINT_TAG = "hpsweep.data_fingerprint"  #: on promoted versions, and on parent runs (warm start)
ALIAS_TAG = "hpsweep.alias"

# ---------------------------------------------------------------- artifacts

SWEEP_FILE = "sweep/sweep.yaml"
EFFECTIVE_SWEEP = "sweep/effective.yaml"  #: the sweep file with any --set applied: what really ran
WARM_START_FILE = "sweep/warm_start.json"  #: what a sweep borrowed from earlier ones, and what it skipped
RESOLVED_SWEEP = "sweep/resolved.json"
VERSIONS_FILE = "sweep/versions.json"
CONFUSION_FILE = "confusion_matrix.json"
CHECKPOINT_ARTIFACTS = "checkpoint"
REPORT_ARTIFACTS = "report"
PROMOTIONS_ARTIFACTS = "promotions"
CONFIRMATION_FILE = "promotions/confirmation.json"  #: on the parent: the latest confirmation's numbers

#: a confirmation trial's config key: the seed of its initial weights and batch order (train.trial_seed)
SEED_PARAM = "seed"

# ---------------------------------------------------------------- run names and metrics

EPOCHS_RUN = "epochs_run"


def trial_run_name(number: int) -> str:
    """`trial-007`: the run name of a sweep's 7th trial."""
    return f"trial-{number:03d}"


def trial_number(run_name: str | None) -> int | None:
    """7 for `trial-007`; None for a name that is not a trial's."""
    head, _, tail = (run_name or "").rpartition("-")
    return int(tail) if head == "trial" and tail.isdigit() else None


def best_metric(metric: str) -> str:
    """The summary metric a trial run holds for the sweep metric: `best_val_accuracy`."""
    return f"best_{metric}"


# ---------------------------------------------------------------- how trials end


class StopReason(StrEnum):
    """Why a trial stopped; the value of STOP_TAG."""

    COMPLETED = "completed"  #: ran every epoch
    EARLY_STOPPED = "early_stopped"  #: train.patience epochs without improvement
    SCHEDULER = "scheduler"  #: the trial scheduler (ASHA, median, hyperband) stopped it
    TIME_BUDGET = "time_budget"  #: search.time_budget ran out while it ran
    DIVERGED = "diverged"  #: its loss stopped being finite
    ERROR = "error"  #: it raised
    OOM = "oom"  #: it ran out of memory (not retried)
    INTERRUPTED = "interrupted"  #: the sweep was stopped (Ctrl-C); a resume continues it
    LOST = "lost"  #: started after Ray last saved the sweep, before its driver died; it runs again


#: how each ending reads to a person, at the epoch it happened
_ENDINGS = {
    StopReason.COMPLETED: "finished, {epoch} epochs", StopReason.EARLY_STOPPED: "early-stopped at epoch {epoch}",
    StopReason.SCHEDULER: "pruned ({scheduler}, epoch {epoch})", StopReason.TIME_BUDGET: "time budget, epoch {epoch}",
    StopReason.DIVERGED: "diverged at epoch {epoch}", StopReason.ERROR: "failed at epoch {epoch}",
    StopReason.OOM: "out of memory, epoch {epoch}", StopReason.INTERRUPTED: "interrupted at epoch {epoch}",
    StopReason.LOST: "lost (runs again)",
}


def state_words(stop: str | None, epoch: int, scheduler: str = "") -> str:
    """A trial's state as the terminal, `status` and the report word it: `running, epoch 3`,
    `pruned (asha, epoch 2)`, `finished, 10 epochs`."""
    if not stop or stop == "running":
        return f"running, epoch {epoch}"
    template = _ENDINGS.get(stop)  # type: ignore[call-overload]
    if template is None:
        return f"{stop}, epoch {epoch}"
    words = template.format(epoch=epoch, scheduler=scheduler or "scheduler")
    return words.removesuffix("s") if words.endswith(" 1 epochs") else words


#: stop reasons of trials that never count as a result, whatever they reached
FAILED_REASONS = frozenset({StopReason.DIVERGED, StopReason.ERROR, StopReason.OOM})


def counts_as_result(status: str, stop_reason: str | None, best: float | None) -> bool:
    """Whether a trial can win a sweep: finished (MLflow's status), with a finite best value, and neither
    diverged nor failed."""
    return (status == "FINISHED" and best is not None and math.isfinite(best)
            and stop_reason not in FAILED_REASONS)


# ---------------------------------------------------------------- what trials report to the driver

#: keys a trial adds to the metrics it reports (through Ray Tune), read by the driver; never logged as metrics
RESULT_STOP = "hpsweep_stop"  #: a StopReason, with the last epoch's report
RESULT_BEST = "hpsweep_best"  #: whether this epoch is the trial's best so far
RESULT_CONFUSION = "hpsweep_confusion"  #: the confusion matrix of the best epoch
RESULT_ERROR = "hpsweep_error"  #: why the trial failed, when it ended itself (out of memory)
RESULT_SCORE = "hpsweep_score"  #: what Ray ranks checkpoints by (the sweep metric, nudged by epoch)
