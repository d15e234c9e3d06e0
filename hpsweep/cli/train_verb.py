"""`hpsweep train`: one trial of a sweep in this process, without Ray, a line per epoch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpsweep.cli.common import EXIT_FAILURE, EXIT_OK, load_with_sets, set_option
from hpsweep.cli.render import short


def cmd_train(args: argparse.Namespace) -> int:
    """Run the sweep's own trainable on its first configuration (after --set), printing each epoch."""
    from hpsweep.contract import StopReason
    from hpsweep.registry.weights import pretrained_state
    from hpsweep.search.samplers import first_configs
    from hpsweep.train.checkpoint import CHECKPOINT_FILE
    from hpsweep.train.local import run_local
    from hpsweep.train.trainable import load_trainable
    from hpsweep.train.trial import prepare_for

    # one trial: the sweep's trial budget does not apply (a fully fixed space is what `train` is for)
    one_trial = ["search.num_trials=1", "search.startup_trials=null"]
    epochs = [f"train.epochs={args.epochs}"] if args.epochs else []
    spec, _ = load_with_sets(args.file, [*args.set, *epochs, *one_trial])
    config = first_configs(spec, 1)[0]
    data = prepare_for(spec, load_trainable(spec.trainable))
    pretrained = pretrained_state(spec.model.pretrained, spec.base_dir)
    what = f"{len(data.train)} train / {len(data.val)} val examples" if data else "its trainable reads its own data"
    print(f"training {spec.name}: {what}, config:")
    print("  " + "  ".join(f"{k}={short(v)}" for k, v in config.items()))
    out = Path(args.out) if args.out else None
    result = run_local(spec, config, data, pretrained, on_epoch=lambda epoch: _show(epoch, spec.train.epochs, out))
    metric = spec.train.metrics()[0]
    best = (f"best {metric} {result.best_value:.4g} at epoch {result.best_epoch}" if result.best_value is not None
            else f"no {metric} reported")
    saved = f"; best checkpoint in {out}" if out is not None and (out / CHECKPOINT_FILE).is_file() else ""
    print(f"{result.status}: {best}{saved}")
    return EXIT_FAILURE if result.status == StopReason.DIVERGED else EXIT_OK


def _show(epoch: Any, epochs: int, out: Path | None) -> None:
    from hpsweep.train.checkpoint import save_checkpoint

    shown = [f"{k} {v:.4g}" for k, v in epoch.metrics.items() if not k.startswith("hpsweep_")
             and k not in ("epoch", "epoch_time_s", "lr", "frozen") and isinstance(v, int | float)
             and not isinstance(v, bool)]
    took = epoch.metrics.get("epoch_time_s")
    print(f"epoch {epoch.epoch}/{epochs}  " + "  ".join(shown) + (f"  ({took:.2f}s)" if took is not None else "")
          + ("  *best" if epoch.is_best else ""), flush=True)
    if out is not None and epoch.is_best and epoch.state is not None:
        save_checkpoint(epoch.state, out)


def register(verbs: Any) -> None:
    p = verbs.add_parser("train", help="train one trial here, without Ray (the sweep's first config, or --set)")
    p.add_argument("file", metavar="FILE", help="a sweep YAML file")
    set_option(p, "fix a value before the trial's configuration is drawn")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--out", metavar="DIR", help="save the best epoch's checkpoint here")
    p.set_defaults(func=cmd_train)
