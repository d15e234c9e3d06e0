"""What every verb's --help ends with: an example and the exit codes, and -v accepted after the verb."""

from __future__ import annotations

import argparse

EXAMPLES = {
    "validate": "hpsweep validate sweeps/*.yaml",
    "schema": "hpsweep schema > sweep.schema.json",
    "space": "hpsweep space sweeps/digits_cnn.yaml --samples 5",
    "train": "hpsweep train sweeps/digits_cnn.yaml --set lr=0.003",
    "run": "hpsweep run sweeps/digits_cnn.yaml --trials 4",
    "resume": "hpsweep resume digits-cnn",
    "submit": "hpsweep submit sweeps/digits_cnn.yaml --address http://head:8265",
    "status": "hpsweep status digits-cnn",
    "list": "hpsweep list --tracking-uri sqlite:///mlflow.db",
    "report": "hpsweep report digits-cnn",
    "compare": "hpsweep compare digits-cnn digits-mlp",
    "promote": "hpsweep promote digits-cnn --dry-run\n  hpsweep promote digits-cnn --confirm 3 --seeds 3",
    "predict": "hpsweep predict models:/digits-cnn@champion digits-png --out predictions.csv",
    "data": "hpsweep data export-digits digits-png",
}

EXIT_CODES = "exit codes: 0 done, 1 a failure while running, 2 bad input (one line naming the field, flag or file)"
SWEEP_EXIT_CODES = EXIT_CODES + ",\n            130 interrupted by Ctrl-C, 143 ended by SIGTERM (both resumable)"
SWEEP_VERBS = frozenset({"run", "resume", "promote"})  #: promote --confirm runs a sweep


def finish_verbs(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Give each verb a description (its one-line help), an example and the exit codes, and let -v come
    after the verb as well as before it."""
    helps = {action.dest: action.help for action in verbs._choices_actions}
    for name, parser in verbs.choices.items():
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        if parser.description is None and helps.get(name):
            parser.description = f"{helps[name][0].upper()}{helps[name][1:]}."
        example = f"example:\n  {EXAMPLES[name]}\n\n" if name in EXAMPLES else ""
        parser.epilog = example + (SWEEP_EXIT_CODES if name in SWEEP_VERBS else EXIT_CODES)
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="log progress to stderr (as before the verb)")
