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


def _launched(args, fn, *fn_args, record_dir, distributed: bool = False, **fn_kwargs) -> int:
    """Run a launched stage through ume/launch: in-process, or a SLURM job when the config
    given by ``--launch`` says ``launch.launcher: slurm`` (see docs/cluster.md)."""
    from ume.config import load_config
    from ume.launch import Resources, run_stage

    run_stage(
        fn,
        fn_args,
        fn_kwargs,
        stage=args.cmd,
        launch=load_config(*args.launch).launch if args.launch else None,
        resources=Resources.parse(args.resources),
        rule=args.rule,
        log_path=args.log,
        record_dir=record_dir,
        distributed=distributed,
    )
    return 0


def cmd_models(args) -> int:
    from ume.models.stage import ROLES, build_base_models

    cfg = _config(args)
    return _launched(
        args, build_base_models, cfg, args.out, tuple(args.roles or ROLES), record_dir=args.out
    )


def cmd_pretrain(args) -> int:
    from ume.models.pretrain import pretrain_models

    cfg = _config(args)
    return _launched(args, pretrain_models, cfg, args.init, args.out, record_dir=args.out)


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

    cfg, model_dir, out = _config(args), _annotator_dir(args), args.out
    return _launched(
        args,
        annotate_pairs,
        cfg,
        args.pairs,
        out,
        model_dir,
        reasoner=args.reasoner,
        lengths_path=args.lengths,
        record_dir=Path(out).parent,
    )


def cmd_filter(args) -> int:
    from ume.annotate.stage import filter_pairs

    cfg, model_dir, out = _config(args), _annotator_dir(args), args.out
    return _launched(
        args, filter_pairs, cfg, args.tcot, out, model_dir, record_dir=Path(out).parent
    )


def cmd_toy(args) -> int:
    from ume.launch.toy import toy_allreduce, toy_stage

    if args.distributed:
        return _launched(args, toy_allreduce, args.out, record_dir=None, distributed=True)
    return _launched(
        args,
        toy_stage,
        args.out,
        args.checkpoint_dir,
        args.steps,
        sleep_s=args.sleep_s,
        fail_at=args.fail_at,
        record_dir=Path(args.out).parent,
    )


def cmd_split(args) -> int:
    from ume.annotate.stage import split_pairs

    split_pairs(_config(args), args.filtered, args.contrastive, args.rl)
    return 0


def cmd_eval(args) -> int:
    from ume.eval.run import run_eval

    cfg = _config(args)
    cache = args.cache_dir or cfg.eval.cache_dir or str(Path(cfg.results_dir) / "cache")
    return _launched(
        args,
        run_eval,
        cfg,
        args.suite,
        args.task,
        args.out_dir,
        root=args.root,
        embedder=args.embedder,
        reasoners={"main": args.reasoner, "no_egrl": args.reasoner_no_egrl},
        cache_dir=None if cache == "none" else cache,
        tcot_lengths=args.tcot_lengths,
        record_dir=None,  # tasks of a suite run in parallel: the per-task log holds the job
    )


def cmd_train_embedder(args) -> int:
    from ume.train.contrastive import train_embedder

    cfg = _config(args)
    return _launched(
        args,
        train_embedder,
        cfg,
        args.contrastive,
        args.embedder,
        args.out,
        args.checkpoint_dir,
        datasets_json=args.datasets,
        record_dir=args.out,
        distributed=True,
    )


def cmd_sft(args) -> int:
    from ume.train.sft import train_sft

    cfg = _config(args)
    return _launched(
        args,
        train_sft,
        cfg,
        args.pairs,
        args.reasoner,
        args.out,
        args.checkpoint_dir,
        record_dir=args.out,
        distributed=True,
    )


def cmd_egrl(args) -> int:
    from ume.train.egrl import train_egrl

    cfg = _config(args)
    return _launched(
        args,
        train_egrl,
        cfg,
        args.rl,
        args.reasoner,
        args.embedder,
        args.discriminator,
        args.out,
        args.checkpoint_dir,
        tcot_lengths=args.tcot_lengths,
        record_dir=args.out,
        distributed=True,
    )


def cmd_leaderboard(args) -> int:
    from ume.report.leaderboard import build_leaderboard

    cfg = _config(args)
    runs = {cfg.run: args.eval_dir}
    for name in cfg.eval.leaderboard_runs:
        runs.setdefault(name, str(Path(cfg.results_dir) / name / "eval"))
    for spec in args.runs or []:
        name, _, folder = spec.partition("=")
        if not name or not folder:
            raise UmeError(f"--runs {spec!r}: expected NAME=DIR (a run name and its eval folder)")
        runs[name] = folder
    summary = build_leaderboard(runs, args.suites or cfg.eval.suites, args.out, cfg=cfg)
    for suite, rows in summary["suites"].items():
        for label, r in rows.items():
            overall = "--" if r["overall"] is None else f"{r['overall']:.2f}"
            state = "complete" if r["complete"] else f"INCOMPLETE ({len(r['missing'])} missing)"
            print(f"{suite}: {label}: overall {overall} ({state})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ume", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def stage(name: str, fn, help: str, config: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        if config:
            sp.add_argument("--config", nargs="+", required=True, help="config file(s), merged")
        sp.set_defaults(fn=fn)
        return sp

    def launched(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Options of a launched stage (what a rule's LAUNCH_ARGS pass; docs/cluster.md)."""
        g = sp.add_argument_group("launch (in-process unless --launch says slurm)")
        g.add_argument("--launch", nargs="+", help="config file(s) with the launch: section")
        g.add_argument(
            "--resources",
            nargs="*",
            metavar="NAME=N",
            help="nodes, gpus (per node), cpus_per_task, mem_mb, runtime (min), tasks_per_node",
        )
        g.add_argument("--rule", help="the Snakemake rule, for messages")
        g.add_argument("--log", help="the rule's log; job files go to <log without .log>.slurm/")
        return sp

    sp = sub.add_parser("schema", help="print or write the JSON schema of the config")
    sp.add_argument("-o", "--out")
    sp.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the schema")
    sp.set_defaults(fn=cmd_schema)

    stage("validate", cmd_validate, "load and check config files")
    sp = launched(stage("models", cmd_models, "build tiny models / record local backbones"))
    sp.add_argument("--out", required=True, help="models folder (one subfolder per role)")
    sp.add_argument("--roles", nargs="*")
    sp = launched(stage("pretrain", cmd_pretrain, "pretrain the tiny backbones (real: as is)"))
    sp.add_argument("--init", required=True, help="base-model folder (<role>/backbone.json)")
    sp.add_argument("--out", required=True, help="models folder (one subfolder per role)")
    sp = stage("data", cmd_data, "training pairs: synthetic or the paper's sources")
    sp.add_argument("--out", required=True)
    sp = stage("benchmark", cmd_benchmark, "write the synthetic benchmark in the real layouts")
    sp.add_argument("--out", required=True)
    for name, fn, inp in (("annotate", cmd_annotate, "pairs"), ("filter", cmd_filter, "tcot")):
        sp = launched(stage(name, fn, f"{name} stage of data construction"))
        sp.add_argument(f"--{inp}", required=True)
        sp.add_argument("--out", required=True)
        sp.add_argument("--annotator", help="backbone.json of the annotator (backend hf)")
        if name == "annotate":
            sp.add_argument("--reasoner", help="Reasoner backbone.json: lengths in its tokens")
            sp.add_argument("--lengths", help="where to write the T-CoT length statistics")
    sp = launched(stage("toy", cmd_toy, "toy resumable stage (launcher checks)", config=False))
    sp.add_argument("--out", required=True, help="final artifact (JSON)")
    sp.add_argument("--checkpoint-dir", required=True)
    sp.add_argument("--steps", type=int, default=10)
    sp.add_argument("--sleep-s", type=float, default=0.0, help="seconds per step")
    sp.add_argument("--fail-at", type=int, help="raise at this step (failure checks)")
    sp.add_argument("--distributed", action="store_true", help="all-reduce over the job's tasks")
    sp = stage("split", cmd_split, "split into contrastive and RL sets")
    sp.add_argument("--filtered", required=True)
    sp.add_argument("--contrastive", required=True)
    sp.add_argument("--rl", required=True)
    sp = launched(stage("eval", cmd_eval, "evaluate tasks: reason, encode, rank, score"))
    sp.add_argument("--suite", required=True, help="synth | mmeb | uvrb")
    sp.add_argument("--task", nargs="+", required=True, help="task name(s) of the suite")
    sp.add_argument("--out-dir", required=True, help="eval folder: <out-dir>/<variant>/<suite>/")
    sp.add_argument("--root", help="benchmark root (default: eval.<suite>_root)")
    sp.add_argument("--embedder", help="Embedder folder or base backbone.json")
    sp.add_argument("--reasoner", help="Reasoner folder or backbone.json (variants with T-CoTs)")
    sp.add_argument("--reasoner-no-egrl", help="Reasoner before EG-RL (variant no_egrl)")
    sp.add_argument("--cache-dir", help="T-CoT/embedding caches ('none': no disk cache)")
    sp.add_argument("--tcot-lengths", help="annotated T-CoT lengths: eval.max_new_tokens check")
    sp = launched(
        stage("train-embedder", cmd_train_embedder, "contrastive training of the Embedder")
    )
    sp.add_argument("--contrastive", required=True, help="pairs (split/contrastive.parquet)")
    sp.add_argument("--embedder", required=True, help="base Embedder backbone.json")
    sp.add_argument("--datasets", help="per-dataset sampling weights (data/datasets.json)")
    sp.add_argument("--out", required=True, help="output folder: model/, curves, manifest")
    sp.add_argument("--checkpoint-dir", help="resumption checkpoints (default <out>.checkpoints)")
    sp = launched(stage("sft", cmd_sft, "cold-start SFT of the Reasoner on annotated T-CoTs"))
    sp.add_argument("--pairs", required=True, help="annotated pairs (split or filter parquet)")
    sp.add_argument("--reasoner", required=True, help="starting Reasoner (backbone.json/folder)")
    sp.add_argument("--out", required=True, help="output folder: model/, backbone.json, logs")
    sp.add_argument("--checkpoint-dir", help="resumption checkpoints (default <out>.checkpoints)")
    sp = launched(stage("egrl", cmd_egrl, "EG-RL: GRPO of the Reasoner guided by the Embedder"))
    sp.add_argument("--rl", required=True, help="RL pairs (split/rl.parquet)")
    sp.add_argument("--reasoner", required=True, help="starting Reasoner (backbone.json/folder)")
    sp.add_argument("--embedder", help="frozen Embedder folder (egrl.embedder_backend: local)")
    sp.add_argument("--discriminator", help="Discriminator backbone.json/folder (local backend)")
    sp.add_argument("--tcot-lengths", help="annotated T-CoT lengths (max_completion_length check)")
    sp.add_argument("--out", required=True, help="output folder: model/, backbone.json, logs")
    sp.add_argument("--checkpoint-dir", help="resumption checkpoints (default <out>.checkpoints)")
    sp = stage("leaderboard", cmd_leaderboard, "leaderboard tables, plot, submissions")
    sp.add_argument("--eval-dir", required=True, help="this run's eval folder")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--suites", nargs="*", help="suites (default: eval.suites)")
    sp.add_argument("--runs", nargs="*", metavar="NAME=DIR", help="more runs' eval folders")
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
