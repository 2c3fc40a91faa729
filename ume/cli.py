"""``python -m ume <stage> ...`` — what the Snakemake rules call (and what users can call by hand).

Every stage takes ``--config`` (the run's resolved config, YAML or JSON; several files merge,
later ones win) and explicit input/output paths. Heavy imports (torch, transformers) happen
inside the stage that needs them, so light stages start fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ume.errors import UmeError


def _config(args):
    from ume.config import load_config

    return load_config(*args.config)


def cmd_schema(args) -> int:
    from ume.config import schema_text

    text = schema_text()
    if args.check:
        current = Path(args.check).read_text() if Path(args.check).exists() else ""
        if current != text:
            print(f"{args.check} is out of date: run `python -m ume schema -o {args.check}`")
            return 1
        return 0
    if args.out:
        from ume.io import write_text

        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_validate(args) -> int:
    cfg = _config(args)
    print(f"ok: run {cfg.run!r} -> {cfg.run_dir}")
    return 0


def cmd_models(args) -> int:
    from ume.models.stage import ROLES, build_base_models

    build_base_models(_config(args), args.out, tuple(args.roles or ROLES))
    return 0


def cmd_data(args) -> int:
    from ume.data.stage import prepare_pairs

    prepare_pairs(_config(args), args.out)
    return 0


def cmd_benchmark(args) -> int:
    from ume.data.stage import prepare_benchmark

    prepare_benchmark(_config(args), args.out)
    return 0


def _annotator_dir(args) -> str | None:
    if not args.annotator:
        return None
    from ume.models.stage import read_backbone

    return read_backbone(args.annotator)["path"]


def cmd_annotate(args) -> int:
    from ume.annotate.stage import annotate_pairs

    annotate_pairs(_config(args), args.pairs, args.out, _annotator_dir(args))
    return 0


def cmd_filter(args) -> int:
    from ume.annotate.stage import filter_pairs

    filter_pairs(_config(args), args.tcot, args.out, _annotator_dir(args))
    return 0


def cmd_split(args) -> int:
    from ume.annotate.stage import split_pairs

    split_pairs(_config(args), args.filtered, args.contrastive, args.rl)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ume", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def stage(name: str, fn, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--config", nargs="+", required=True, help="config file(s), merged")
        sp.set_defaults(fn=fn)
        return sp

    sp = sub.add_parser("schema", help="print or write the JSON schema of the config")
    sp.add_argument("-o", "--out")
    sp.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the schema")
    sp.set_defaults(fn=cmd_schema)

    stage("validate", cmd_validate, "load and check config files")
    sp = stage("models", cmd_models, "build tiny models / record local backbones")
    sp.add_argument("--out", required=True, help="models folder (one subfolder per role)")
    sp.add_argument("--roles", nargs="*")
    sp = stage("data", cmd_data, "training pairs: synthetic or the paper's sources")
    sp.add_argument("--out", required=True)
    sp = stage("benchmark", cmd_benchmark, "write the synthetic benchmark in the real layouts")
    sp.add_argument("--out", required=True)
    for name, fn, inp in (("annotate", cmd_annotate, "pairs"), ("filter", cmd_filter, "tcot")):
        sp = stage(name, fn, f"{name} stage of data construction")
        sp.add_argument(f"--{inp}", required=True)
        sp.add_argument("--out", required=True)
        sp.add_argument("--annotator", help="backbone.json of the annotator (backend hf)")
    sp = stage("split", cmd_split, "split into contrastive and RL sets")
    sp.add_argument("--filtered", required=True)
    sp.add_argument("--contrastive", required=True)
    sp.add_argument("--rl", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    from ume.models.offline import set_offline_env

    set_offline_env()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UmeError as e:
        print(f"ume {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
