"""Trainables without torch: bag-of-words + logistic regression over token-id strings ("0 43 2 66"),
and one that fails when its config says so (to exercise failed trials)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline


def text_classifier(config: Mapping[str, Any], context: Any) -> None:
    """One 'epoch' per regularisation step: C grows towards the trial's C, reporting validation accuracy."""
    spec = context.spec
    table = pd.read_csv(spec.resolve_path(spec.data.path), dtype=str)
    text, labels = table[spec.data.features[0]], table[spec.data.target]
    train_text, val_text, train_y, val_y = train_test_split(
        text, labels, test_size=spec.data.split.val, stratify=labels, random_state=spec.train.seed)
    epochs = spec.train.epochs
    for epoch in range(1, epochs + 1):
        strength = float(config["C"]) * epoch / epochs
        model = make_pipeline(
            CountVectorizer(token_pattern=r"\S+", ngram_range=(1, int(config.get("ngram_max", 1)))),
            LogisticRegression(C=strength, max_iter=500),
        )
        model.fit(train_text, train_y)
        accuracy = float((model.predict(val_text) == val_y).mean())
        context.report({"val_accuracy": accuracy, "epoch": epoch,
                        **({"hpsweep_stop": "completed"} if epoch == epochs else {})}, None)


text_classifier.uses_data = False


def flaky(config: Mapping[str, Any], context: Any) -> None:
    context.report({"val_accuracy": 0.5, "epoch": 1}, None)
    if config.get("explode"):
        raise RuntimeError("boom: this trial was told to fail")
    context.report({"val_accuracy": 0.6, "epoch": 2, "hpsweep_stop": "completed"}, None)


flaky.uses_data = False


def _attempt(config: Mapping[str, Any]) -> None:
    """Note each start of a trial in the file the config names (so a test can count retries)."""
    if config.get("attempts"):
        with open(config["attempts"], "a", encoding="utf-8") as handle:
            handle.write("start\n")


def crashy(config: Mapping[str, Any], context: Any) -> None:
    """Three epochs with a checkpoint each; the worker process dies hard during epoch 2 unless resumed."""
    import os

    _attempt(config)
    done = int(context.resume_state["epoch"]) if context.resume_state else 0
    for epoch in range(done + 1, 4):
        if epoch == 2 and context.resume_state is None:
            os._exit(1)  # as if the worker were killed: no exception, no cleanup
        metrics = {"val_accuracy": 0.25 * epoch, "epoch": epoch}
        if epoch == 3:
            metrics["hpsweep_stop"] = "completed"
        context.report(metrics, {"model": {}, "epoch": epoch})


crashy.uses_data = False


def hungry(config: Mapping[str, Any], context: Any) -> None:
    """Runs out of memory in its second epoch."""
    _attempt(config)
    context.report({"val_accuracy": 0.5, "epoch": 1}, None)
    raise MemoryError("could not allocate 64 GiB (simulated)")


hungry.uses_data = False


def sleepy(config: Mapping[str, Any], context: Any) -> None:
    """Slow epochs, for interrupting a sweep while trials run."""
    import time

    for epoch in range(1, context.spec.train.epochs + 1):
        time.sleep(1.0)
        context.report({"val_accuracy": 0.1, "epoch": epoch}, None)


sleepy.uses_data = False


def steady(config: Mapping[str, Any], context: Any) -> None:
    """Slow, checkpointed epochs whose metric depends only on x and the epoch, so a trial resumed from
    any checkpoint reports what an uninterrupted one would. Each epoch run is logged to config["log"]
    with the Ray node it ran on (to see where a trial ran and which epochs ran twice). With config["gate"],
    epoch 3 waits until that file exists, so a test can act between epochs 2 and 3 however fast the host."""
    import os
    import time

    done = int(context.resume_state["epoch"]) if context.resume_state else 0
    node = _node_id()
    x, epochs = float(config["x"]), context.spec.train.epochs
    for epoch in range(done + 1, epochs + 1):
        while epoch == 3 and config.get("gate") and not os.path.exists(config["gate"]):
            time.sleep(0.05)
        time.sleep(float(config.get("sleep", 0.3)))
        if config.get("log"):
            with open(config["log"], "a", encoding="utf-8") as handle:
                handle.write(f"{x} {epoch} {node}\n")
        metrics = {"val_accuracy": round(x * epoch / epochs, 6), "epoch": epoch}
        if epoch == epochs:
            metrics["hpsweep_stop"] = "completed"
        context.report(metrics, {"model": {}, "epoch": epoch})


steady.uses_data = False


#: plateau's validation accuracy by epoch: best at epochs 1 and 4 only
PLATEAU = (0.5, 0.4, 0.4, 0.6, 0.3, 0.3)


def plateau(config: Mapping[str, Any], context: Any) -> None:
    """Six epochs whose metric improves only at epochs 1 and 4, checkpointed when the sweep says one
    is due; the worker dies hard in epoch `die_at` (default 6; 0: never) of its first attempt. Each
    epoch run is logged, after the trial's `x` when it has one (which scales the metric)."""
    import os

    done = int(context.resume_state["epoch"]) if context.resume_state else 0
    scale = float(config.get("x", 1.0))
    best = max((round(v * scale, 6) for v in PLATEAU[:done]), default=None)
    for epoch in range(done + 1, len(PLATEAU) + 1):
        if epoch == int(config.get("die_at", 6)) and not os.path.exists(config["log"] + ".died"):
            open(config["log"] + ".died", "w").close()
            os._exit(1)
        with open(config["log"], "a", encoding="utf-8") as handle:
            handle.write(f"{config['x']} {epoch}\n" if "x" in config else f"{epoch}\n")
        value = round(PLATEAU[epoch - 1] * scale, 6)
        is_best, last = best is None or value > best, epoch == len(PLATEAU)
        best = value if is_best else best
        metrics = {"val_accuracy": value, "epoch": epoch, "hpsweep_best": is_best,
                   **({"hpsweep_stop": "completed"} if last else {})}
        due = context.checkpoint_due(is_best, last)
        context.report(metrics, {"model": {}, "epoch": epoch} if due else None)


plateau.uses_data = False


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return "local"


def _anonymous() -> int:
    """Bytes of this process's anonymous memory (its heap: what it copied, not files it maps)."""
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_probe(config: Mapping[str, Any], context: Any) -> None:
    """Trains with hpsweep's shared loop, as image_classifier does, and adds to every report how much
    private memory (USS) its worker process holds, now and when the trainable started, and its anonymous
    memory (what it copied; pages of a mapped file are not), beside the size of the data it was given."""
    import psutil

    from hpsweep.train.trial import run_trial

    report = context.report
    at_start = psutil.Process().memory_full_info().uss  # the data received, nothing trained yet

    def measured(metrics: Mapping[str, Any], state: Any = None) -> None:
        info = psutil.Process().memory_full_info()
        report({**metrics, "worker_private_mb": info.uss / 1e6, "worker_private_at_start_mb": at_start / 1e6,
                "worker_rss_mb": info.rss / 1e6, "worker_anonymous_mb": _anonymous() / 1e6,
                "data_mb": context.data.nbytes() / 1e6}, state)

    context.report = measured
    run_trial(context.spec, context.data, config, on_epoch=context.on_epoch, resume=context.resume_state)
