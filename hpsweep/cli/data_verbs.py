"""`hpsweep data`: the bundled datasets written out as files, in the layouts the data sources read, and
the decoded-image caches listed and cleared."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpsweep.cli.common import EXIT_OK, storage_option
from hpsweep.errors import UserError


def cmd_export_digits(args: argparse.Namespace) -> int:
    from hpsweep.train.data.digits import export_digits

    count = export_digits(Path(args.folder), args.layout)
    print(f"wrote {count} digit images to {args.folder} ({args.layout} layout)")
    return EXIT_OK


def cmd_export_diabetes(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    print(f"wrote {len(frame)} rows to {path} (target column: target)")
    return EXIT_OK


def cmd_cache_list(args: argparse.Namespace) -> int:
    import time

    from hpsweep.train.data.cache import list_caches

    root = _cache_root(args)
    caches = list_caches(root)
    if not caches:
        print(f"no decoded-image caches in {root}")
        return EXIT_OK
    print(f"decoded-image caches in {root}:")
    print(f"{'key':<24} {'size':>9} {'images':>9} {'shape':<14} {'last used':<16} source")
    for cache in caches:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime((cache.folder / "meta.json").stat().st_mtime))
        shape = "x".join(map(str, cache.shape[1:]))
        print(f"{cache.key:<24} {_size(cache.nbytes):>9} {cache.shape[0]:>9,} {shape:<14} {used:<16} "
              f"{cache.meta.get('source', '')}")
    print(f"{len(caches)} caches, {_size(sum(c.nbytes for c in caches))} in all")
    return EXIT_OK


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from hpsweep.train.data.cache import clear_caches, list_caches

    root = _cache_root(args)
    known = {c.key for c in list_caches(root)}
    for key in args.keys:
        matches = [k for k in known if k.startswith(key)]
        if len(matches) != 1:
            what = "matches no cache" if not matches else f"matches {len(matches)} caches"
            raise UserError(f"cache key {key!r} {what} in {root} (hpsweep data cache list shows them)")
    sizes = {c.key: c.nbytes for c in list_caches(root)}
    removed = clear_caches(root, args.keys)
    freed = sum(sizes.get(folder.name, 0) for folder in removed)
    print(f"removed {sum(1 for f in removed if f.name in sizes)} caches from {root}, {_size(freed)} freed")
    return EXIT_OK


def _cache_root(args: argparse.Namespace) -> Path:
    from hpsweep.storage import cache_root

    try:
        return cache_root(args.storage)
    except ValueError as exc:
        raise UserError(f"--storage: {exc}") from None


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def register(verbs: Any) -> None:
    data = verbs.add_parser("data", help="write bundled datasets as files; list or clear decoded-image caches")
    data = data.add_subparsers(dest="data_verb", required=True, metavar="VERB", help="what to do with data")
    p = data.add_parser("export-digits", help="scikit-learn's digits as image files")
    p.add_argument("folder", metavar="DIR", help="the folder to write")
    p.add_argument("--layout", choices=["folders", "csv", "filename"], default="folders",
                   help="folders: DIR/<digit>/*.png; csv: DIR/labels.csv + DIR/images; filename: label in the name")
    p.set_defaults(func=cmd_export_digits)
    p = data.add_parser("export-diabetes", help="scikit-learn's diabetes table (regression) as a CSV")
    p.add_argument("file", metavar="FILE", help="the CSV to write")
    p.set_defaults(func=cmd_export_diabetes)
    cache = data.add_parser("cache", help="list or clear the decoded-image caches ($HPSWEEP_CACHE, else "
                            "data-cache/ in the results storage)")
    cache.set_defaults(func=cmd_cache_list)
    storage_option(cache)
    what = cache.add_subparsers(dest="cache_verb", metavar="VERB", help="list or clear the caches")
    p = what.add_parser("list", help="every cache with its size, images and source (the default)")
    storage_option(p)
    p.set_defaults(func=cmd_cache_list)
    p = what.add_parser("clear", help="remove the caches named by key (a unique prefix is enough), or all of them")
    p.add_argument("keys", nargs="*", metavar="KEY")
    storage_option(p)
    p.set_defaults(func=cmd_cache_clear)
