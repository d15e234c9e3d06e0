"""The report's account of `promote --confirm`: each re-trained configuration's seeds, means and bound,
which went forward, the registered seed and the selection bias of the sweep's best trial."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from hpsweep import contract as C


def recorded_confirmation(client: Any, parent: Any) -> dict[str, Any] | None:
    """The latest confirmation recorded on the sweep's parent run, or None when there was none."""
    if not any(k.startswith(C.PROMOTION_TAG) for k in parent.data.tags):
        return None  # no promotion at all: nothing to read
    from hpsweep.track.queries import read_artifact_text

    try:
        return json.loads(read_artifact_text(client, parent.info.run_id, C.CONFIRMATION_FILE))
    except Exception:  # promoted without --confirm: the file does not exist
        return None


def confirmation_html(confirmed: dict[str, Any] | None, metric: str) -> list[str]:
    """The report's section, or nothing when the sweep was never confirmed."""
    if not confirmed:
        return []
    esc = html.escape
    bound = "lower" if confirmed["mode"] == "max" else "upper"
    rows = []
    for config in confirmed["configurations"]:
        chosen = config["rank"] == confirmed["chosen_rank"]
        seeds = ", ".join(f"{s['seed']}: {_num(s['val'])} / {_num(s['test'])}" for s in config["seeds"])
        kind, label = (' class="best"', f"#{config['rank']} (chosen)") if chosen else ("", f"#{config['rank']}")
        rows.append(f"<tr{kind}><td>{label}"
                    f"</td><td>{_num(config['val_original'])}</td><td>{esc(seeds)}</td>"
                    f"<td>{_num(config['val_mean'])}</td><td>{_num(config['test_mean'])}</td>"
                    f"<td>{_num(config['bound'])}</td><td>{_num(config['selection_bias'])}</td></tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in (
        "configuration", "original val", "seed: val / test", "val mean", f"test {metric} mean",
        f"{confirmed['confidence']:.0%} {bound} bound", "selection bias"))
    registered = confirmed.get("registered_seed")
    return ["<h2>Confirmation of the best configurations</h2>",
            f"<p>{esc(confirmed.get('decision', ''))}</p>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
            f"<p>Gate: {esc(confirmed['method'])}. Re-trained in sweep "
            f"<code>{esc(confirmed['confirmation_sweep'])}</code>. Selection bias (a trial's original validation "
            f"value minus its seeds' mean) of the sweep's best: <b>{_num(confirmed['selection_bias'])}</b>."
            + (f" Registered: seed {registered} of #{confirmed['chosen_rank']}." if registered is not None else "")
            + "</p>"]


def _num(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"
