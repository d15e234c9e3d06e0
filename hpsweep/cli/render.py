"""What the CLI shows besides the live view: the promotion decision, comparisons, short numbers."""

from __future__ import annotations

from typing import Any


def print_decision(decision: Any) -> None:
    """Challenger and champion side by side: model, run, test metrics (* the one compared), params."""
    columns = [decision.challenger] + ([decision.champion] if decision.champion else [])
    table = [("", [c.role for c in columns]), ("model", [c.model_uri for c in columns]),
             ("run", [c.run_id or "-" for c in columns])]
    for name in sorted(decision.challenger.test):
        mark = " *" if name == decision.metric else ""
        table.append((f"test_{name}{mark}", [f"{c.test.get(name, float('nan')):.4g}" for c in columns]))
    for key in sorted(set().union(*(c.params for c in columns))):
        table.append((key, [short(number(c.params.get(key, "-"))) for c in columns]))
    first = max(len(label) for label, _ in table) + 2
    widths = [max(len(values[i]) for _, values in table) + 2 for i in range(len(columns))]
    for label, values in table:
        print(f"{label:<{first}}" + "".join(f"{v:<{w}}" for v, w in zip(values, widths, strict=True)).rstrip())
    where = f"{decision.model_name}@{decision.alias}"
    if decision.dry_run:
        print(f"dry run, nothing written: would be {decision.reason}")
    elif decision.promoted:
        print(f"{decision.reason}; {where} is now version {decision.version}")
    else:
        print(f"{decision.reason}; {where} stays" + (f" on version {decision.champion.version}"
                                                    if decision.champion else " unset"))


def print_confirmation(decision: Any) -> None:
    """`promote --confirm`'s numbers: each configuration's original value, its seeds, their means and the
    bound; which went forward, which seed is registered, and the selection bias of the sweep's best."""
    confirmed = decision.confirmation
    if confirmed is None:
        return
    metric, bound = decision.metric, "lower" if decision.mode == "max" else "upper"
    rows = [("config", "original val", "seeds' val mean", f"test {metric} per seed", "test mean",
             f"{confirmed['confidence']:.0%} {bound} bound")]
    for config in confirmed["configurations"]:
        mark = " <" if config["rank"] == confirmed["chosen_rank"] else ""
        tests = " ".join(f"{s['seed']}:{s['test']:.4g}" for s in config["seeds"])
        rows.append((f"#{config['rank']}{mark}", f"{config['val_original']:.4g}", f"{config['val_mean']:.4g}", tests,
                     f"{config['test_mean']:.4g}", f"{config['bound']:.4g}"))
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]))]
    for row in rows:
        print("".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"gate: {confirmed['method']}; confirmation sweep {confirmed['confirmation_sweep']}")
    if (bias := confirmed["selection_bias"]) is not None:
        print(f"selection bias of the sweep's best trial (its val minus its seeds' mean): {bias:+.4g}")
    if confirmed["registered_seed"] is not None:
        print(f"model: seed {confirmed['registered_seed']} of #{confirmed['chosen_rank']}: of its seeds that beat "
              f"the champion, the one nearest their mean test value (a typical model, not the luckiest)")


def number(text: str) -> Any:
    """MLflow params are text; show numbers as numbers (short)."""
    try:
        return float(text) if any(ch in text for ch in ".e") else text
    except ValueError:
        return text


def short(value: Any) -> str:
    """A value for a person: floats to 4 significant digits, lists and the like as YAML (`[64, 32]`)."""
    from hpsweep.spec.yamlio import as_yaml

    return value if isinstance(value, str) else as_yaml(value)


def comparison_rows(found: Any) -> list[tuple[str, str, str]]:
    """`hpsweep compare`'s table: (label, sweep A, sweep B) for the sweeps and their best trials' params."""
    a, b = found.a, found.b
    rows = [("sweep", a.sweep_id, b.sweep_id), ("trials", str(len(a.trials)), str(len(b.trials)))]
    metric = a.metric if a.metric == b.metric else f"{a.metric} / {b.metric}"
    rows.append((f"best {metric}", f"{a.best.best:.4g}" if a.best else "-", f"{b.best.best:.4g}" if b.best else "-"))
    rows.append(("best trial", a.best.name if a.best else "-", b.best.name if b.best else "-"))
    rows.append(("trial-epochs", str(a.compute.get("trial_epochs", 0)), str(b.compute.get("trial_epochs", 0))))
    left, right = (a.best.params if a.best else {}), (b.best.params if b.best else {})
    for name in [*left, *(k for k in right if k not in left)]:
        rows.append((f"  {name}", short(left.get(name, "-")), short(right.get(name, "-"))))
    return rows
