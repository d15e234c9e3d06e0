"""Every verb's --help: a description, an example that parses, the exit codes, every argument described."""

from __future__ import annotations

import shlex

import pytest

from hpsweep.cli.help_text import EXAMPLES
from hpsweep.cli.main import build_parser, main


def _verbs():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "verb")
    return action.choices


@pytest.mark.parametrize("verb", sorted(_verbs()))
def test_each_verb_has_a_description_an_example_that_parses_and_the_exit_codes(verb, capsys):
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"example:\n  hpsweep {verb}" in text and "exit codes: 0 done, 1 " in text and "2 bad input" in text
    assert ("130 interrupted by Ctrl-C" in text) == (verb in ("run", "resume", "promote"))  # verbs that run sweeps
    parser = _verbs()[verb]
    assert parser.description and parser.description[0].isupper()
    undescribed = [a.dest for a in parser._actions if not a.help]
    assert undescribed == []  # every positional argument and option says what it is
    for example in EXAMPLES[verb].splitlines():
        command = shlex.split(example.split(">")[0])[1:]  # the command, not where its output goes
        build_parser().parse_args(command)  # each example is a command that parses


@pytest.mark.parametrize("argv", [["-v", "list"], ["list", "-v"]], ids=["before", "after"])
def test_verbose_goes_before_or_after_the_verb(argv):
    assert build_parser().parse_args(argv).verbose is True
    assert build_parser().parse_args(["list"]).verbose is False
