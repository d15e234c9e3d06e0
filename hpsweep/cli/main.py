"""The `hpsweep` command: one small module per verb group registers its verbs; errors are translated once.

Exit codes: 0 success, 1 a runtime failure, 2 bad input (a UserError: one line per problem), 130 an
interrupted sweep (it can be resumed), 143 a sweep ended by SIGTERM (taken as Ctrl-C: it can be resumed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from hpsweep import __version__
from hpsweep.cli import data_verbs, inspect_verbs, registry_verbs, run_verbs, spec_verbs, train_verb
from hpsweep.cli.common import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED
from hpsweep.cli.help_text import finish_verbs
from hpsweep.errors import UserError

VERB_GROUPS = (spec_verbs, train_verb, run_verbs, inspect_verbs, registry_verbs, data_verbs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpsweep", description="Hyperparameter sweeps for PyTorch.")
    parser.add_argument("--version", action="version", version=f"hpsweep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for group in VERB_GROUPS:
        group.register(verbs)
    finish_verbs(verbs)
    return parser


class _ToStderr(logging.Handler):
    """Each record as `hpsweep: message` on whatever sys.stderr is when it is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"hpsweep: {record.getMessage()}", file=sys.stderr, flush=True)


def _show_progress() -> None:
    """Long work before a sweep starts (decoding a large image set) reports on `hpsweep.progress`: its
    lines reach the terminal without -v."""
    progress = logging.getLogger("hpsweep.progress")
    if not progress.handlers:
        progress.addHandler(_ToStderr())
    progress.setLevel(logging.INFO)
    progress.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code = _dispatch(args)
    if argv is None and getattr(args, "exit_at_once", False):
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End the process now: a sweep's writes have all landed (MLflow, the report, Ray's state) and Ray has
    stopped, and the interpreter's own teardown (torch's, Ray's and MLflow's exit handlers, freeing every
    module) took about 2 s that the user waited for and the operating system does anyway."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _show_progress()
    try:
        return args.func(args)
    except UserError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        from hpsweep.sweep.interrupt import exit_code

        print("hpsweep: interrupted", file=sys.stderr)
        return exit_code(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # the reader stopped early (`hpsweep status ... | head`): not an error. Output still buffered
        # for the closed pipe goes nowhere, so Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get("HPSWEEP_DEBUG"):
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        print(f"hpsweep: error: {type(exc).__name__}: {first} (set HPSWEEP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
