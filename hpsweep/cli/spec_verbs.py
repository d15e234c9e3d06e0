"""`hpsweep validate`, `schema` and `space`: the sweep file, checked and explained, without running anything."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hpsweep.cli.common import EXIT_BAD_INPUT, EXIT_OK, load_with_sets, searching, set_option, sweep_files
from hpsweep.cli.render import short
from hpsweep.errors import SpecError


def cmd_validate(args: argparse.Namespace) -> int:
    from hpsweep.spec.dimensions import SpaceLayout
    from hpsweep.spec.sweep_spec import load_spec

    failed = False
    for path in sweep_files(args.files):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed = True
            for line in exc.lines():
                print(line, file=sys.stderr)
            continue
        searched = len(SpaceLayout.of(spec).dimensions())
        print(f"{path}: ok ({spec.num_trials} trials, {searching(spec)}, {searched} searched parameters)")
    return EXIT_BAD_INPUT if failed else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from hpsweep.spec.sweep_spec import SweepSpec

    if args.markdown:
        from hpsweep.spec.reference import markdown_reference

        print(markdown_reference(), end="")
        return EXIT_OK
    schema = SweepSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hpsweep sweep file"
    print(json.dumps(schema, indent=2 if args.indent else None))
    return EXIT_OK


def cmd_space(args: argparse.Namespace) -> int:
    from hpsweep.search.samplers import first_configs
    from hpsweep.spec.dimensions import SpaceLayout
    from hpsweep.spec.yamlio import as_yaml

    spec, _ = load_with_sets(args.file, args.set)
    space = SpaceLayout.of(spec)
    print(f"sweep {spec.name}: {spec.num_trials} trials, {searching(spec)}")
    print("searched:")
    for dim in space.dimensions():
        print(f"  {dim.name:<34} {dim.describe()}")
    print("fixed:")
    for name, value in space.fixed().items():
        print(f"  {name:<34} {as_yaml(value)}")
    for name, (value, when) in space.option_constants().items():
        print(f"  {name:<34} {as_yaml(value)}   (when {when})")
    size = space.grid_size()
    print(f"distinct configurations: {size if size is not None else 'unbounded (continuous ranges)'}")
    if args.samples:
        print(f"first {args.samples} trials the {spec.search.algorithm} sampler draws:")
        for index, config in enumerate(first_configs(spec, args.samples), 1):
            print(f"  {index:>3}: " + "  ".join(f"{k}={short(v)}" for k, v in config.items()))
    return EXIT_OK


def register(verbs: Any) -> None:
    p = verbs.add_parser("validate", help="check sweep files; exit 2 with one line per problem")
    p.add_argument("files", nargs="+", metavar="FILE", help="sweep YAML files or folders of them")
    p.set_defaults(func=cmd_validate)

    p = verbs.add_parser("schema", help="print the JSON Schema of sweep files (for editors)")
    p.add_argument("--indent", action="store_true", help="pretty-print")
    p.add_argument("--markdown", action="store_true", help="the sweep-file reference as Markdown instead "
                                                           "(docs/sweep-file-reference.md)")
    p.set_defaults(func=cmd_schema)

    p = verbs.add_parser("space", help="show a sweep's search space and the first trials it draws")
    p.add_argument("file", metavar="FILE", help="a sweep YAML file")
    p.add_argument("--samples", type=int, default=0, metavar="N", help="also draw N trial configs")
    set_option(p, "override the sweep file before showing its space")
    p.set_defaults(func=cmd_space)
