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
    if args.show:  # every key, defaults filled: what the files leave out is the typed default
        import yaml

        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    print(f"ok: run {cfg.run!r} -> {cfg.run_dir}", file=sys.stderr if args.show else sys.stdout)
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
    from ume.train.pretrain import pretrain_models

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


def cmd_split(args) -> int:
    from ume.annotate.stage import split_pairs

    split_pairs(_config(args), args.filtered, args.contrastive, args.rl)
    return 0


def cmd_eval(args) -> int:
    from ume.eval.run import run_eval

    cfg = _config(args)
    cache = args.cache_dir or cfg.eval_cache_dir
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


def cmd_serve(args) -> int:
    """``ume serve``: the run's Reasoner, Embedder and Discriminator as an OpenAI-compatible
    server (ume/serve; docs/evaluation.md, "Serving")."""
    from ume import plan
    from ume.serve.app import serve
    from ume.serve.service import Limits, Service

    cfg = _config(args)

    def newest(*candidates: str) -> str | None:  # the newest stage the run has on disk
        return next((c for c in candidates if Path(c).exists()), None)

    paths = {
        "embedder": args.embedder
        or newest(*(plan.embedder_model(cfg, s) for s in plan.EMBEDDER_STAGES)),
        "reasoner": args.reasoner
        or newest(*(plan.reasoner_model(cfg, s) for s in plan.REASONER_STAGES)),
        "discriminator": args.discriminator or newest(plan.base_model(cfg, "discriminator")),
    }
    for role in ("embedder", "reasoner"):
        if paths[role] is None:
            raise UmeError(f"no {role} in {cfg.run_dir}/models: run the pipeline or pass --{role}")
    names = {r: f"{cfg.run}-{r}" for r in paths} | dict(n.split("=", 1) for n in args.name or [])
    cache = args.cache_dir or cfg.eval_cache_dir
    allowed = [Path(a) for a in args.allowed_local_media_path or []]
    for a in allowed:
        if not a.is_dir():
            raise UmeError(f"--allowed-local-media-path {a}: not a folder on this machine")
    limits = Limits(
        allowed_local_media=tuple(allowed),
        max_items=args.max_items,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_new_tokens=args.max_new_tokens,
        max_input_tokens=args.max_input_tokens,
    )
    service = Service(
        cfg,
        paths,
        names,
        cache_dir=None if cache == "none" else cache,
        limits=limits,
        batch_wait_s=args.batch_wait_ms / 1000,
        max_batch=args.max_batch,
        chat_template=Path(args.chat_template).read_text() if args.chat_template else None,
    )
    serve(
        service,
        host=args.host,
        port=args.port,
        max_body_bytes=limits.max_body_bytes,
        timeout_s=args.timeout_s,
    )
    return 0


def cmd_check_data(args) -> int:
    """Report, for every task of the suites, whether its data is there (module
    ume.suites.check): found (with counts), missing or incomplete (the path looked for and
    what to download), malformed (file and row). Exit 1 only with --strict."""
    import json

    from ume.suites.base import DataRoots
    from ume.suites.check import check_suites, report

    cfg = _config(args)
    suites = args.suite or [s for s in cfg.eval.suites if s != "synth"] or ["mmeb", "uvrb"]
    if "synth" in suites and args.root is None:
        raise UmeError("check-data --suite synth needs --root (the synthetic benchmark folder)")
    roots = {s: DataRoots.from_eval(cfg.eval, s, args.root) for s in suites}
    statuses = check_suites(
        roots,
        tasks=args.task,
        quick=args.quick,
        num_frames=cfg.eval.num_frames,
        on_bad_item=cfg.eval.on_bad_item,
        verify_media=args.verify_media,
    )
    print(report(statuses))
    if args.json:
        from ume.io import write_text

        write_text(args.json, json.dumps([s.to_dict() for s in statuses], indent=2) + "\n")
    bad = [s for s in statuses if s.status != "found"]
    return 1 if (args.strict and bad) else 0


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
            state = (
                "complete"
                if r["complete"]
                else f"INCOMPLETE ({len(r['missing'])} missing, {len(r['incomplete'])} incomplete)"
            )
            if r["partial"]:  # tasks scored with skipped items, and the averages over them
                state += f", PARTIAL ({len(r['partial'])} task(s) with skipped items)"
            print(f"{suite}: {label}: overall {overall} ({state})")
    return 0


def add_launch_options(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of a launched stage (what a rule's LAUNCH_ARGS pass; docs/cluster.md); a stage
    given them runs through :func:`_launched`."""
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

    sp = stage("validate", cmd_validate, "load and check config files")
    sp.add_argument("--show", action="store_true", help="print the resolved config as YAML")
    sp = add_launch_options(
        stage("models", cmd_models, "build tiny models / record local backbones")
    )
    sp.add_argument("--out", required=True, help="models folder (one subfolder per role)")
    sp.add_argument("--roles", nargs="*")
    sp = add_launch_options(
        stage("pretrain", cmd_pretrain, "pretrain the tiny backbones (real: as is)")
    )
    sp.add_argument("--init", required=True, help="base-model folder (<role>/backbone.json)")
    sp.add_argument("--out", required=True, help="models folder (one subfolder per role)")
    sp = stage("data", cmd_data, "training pairs: synthetic or the paper's sources")
    sp.add_argument("--out", required=True)
    sp = stage("benchmark", cmd_benchmark, "write the synthetic benchmark in the real layouts")
    sp.add_argument("--out", required=True)
    for name, fn, inp in (("annotate", cmd_annotate, "pairs"), ("filter", cmd_filter, "tcot")):
        sp = add_launch_options(stage(name, fn, f"{name} stage of data construction"))
        sp.add_argument(f"--{inp}", required=True)
        sp.add_argument("--out", required=True)
        sp.add_argument("--annotator", help="backbone.json of the annotator (backend hf)")
        if name == "annotate":
            sp.add_argument("--reasoner", help="Reasoner backbone.json: lengths in its tokens")
            sp.add_argument("--lengths", help="where to write the T-CoT length statistics")
    sp = stage("split", cmd_split, "split into contrastive and RL sets")
    sp.add_argument("--filtered", required=True)
    sp.add_argument("--contrastive", required=True)
    sp.add_argument("--rl", required=True)
    sp = add_launch_options(stage("eval", cmd_eval, "evaluate tasks: reason, encode, rank, score"))
    sp.add_argument("--suite", required=True, help="synth | mmeb | uvrb")
    sp.add_argument("--task", nargs="+", required=True, help="task name(s) of the suite")
    sp.add_argument("--out-dir", required=True, help="eval folder: <out-dir>/<variant>/<suite>/")
    sp.add_argument("--root", help="benchmark root (default: eval.<suite>_root)")
    sp.add_argument("--embedder", help="Embedder folder or base backbone.json")
    sp.add_argument("--reasoner", help="Reasoner folder or backbone.json (variants with T-CoTs)")
    sp.add_argument("--reasoner-no-egrl", help="Reasoner before EG-RL (variant no_egrl)")
    sp.add_argument("--cache-dir", help="T-CoT/embedding caches ('none': no disk cache)")
    sp.add_argument("--tcot-lengths", help="annotated T-CoT lengths: eval.max_new_tokens check")
    sp = stage("serve", cmd_serve, "serve the run's models: /v1/embeddings, /v1/chat/completions")
    sp.add_argument("--embedder", help="Embedder folder or backbone.json (default: newest)")
    sp.add_argument("--reasoner", help="Reasoner folder or backbone.json (default: newest)")
    sp.add_argument("--discriminator", help="Discriminator (default: the run's base one, if any)")
    sp.add_argument("--name", nargs="*", metavar="ROLE=NAME", help="served names (<run>-<role>)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--cache-dir", help="T-CoT/embedding caches (default eval's; 'none': memory)")
    sp.add_argument("--max-items", type=int, default=64, help="inputs per embeddings request")
    sp.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit")
    sp.add_argument("--max-new-tokens", type=int, default=4096, help="max_tokens limit (chat)")
    sp.add_argument("--max-input-tokens", type=int, default=32768, help="prompt token limit")
    sp.add_argument("--max-batch", type=int, default=64, help="requests batched at most")
    sp.add_argument("--batch-wait-ms", type=float, default=10.0, help="wait to fill a batch")
    sp.add_argument("--timeout-s", type=float, default=600.0, help="per request, queue included")
    sp.add_argument("--chat-template", help="default template of embeddings in chat form")
    sp.add_argument(
        "--allowed-local-media-path",
        nargs="*",
        metavar="FOLDER",
        help="folders whose files requests may name (file:// URL or path); default: none, "
        "images come as base64 (trusted clients only, as vLLM's flag of the same name)",
    )
    sp = stage("check-data", cmd_check_data, "check the benchmark data roots, task by task")
    sp.add_argument("--suite", nargs="*", choices=("mmeb", "uvrb", "synth"),
                    help="suites (default: eval.suites without synth, else mmeb and uvrb)")  # fmt: skip
    sp.add_argument("--task", nargs="*", help="only these tasks (any of their names)")
    sp.add_argument("--root", help="data root for every suite (default: eval.<suite>_root)")
    sp.add_argument("--quick", action="store_true", help="look for the files only (no counts)")
    sp.add_argument("--verify-media", action="store_true", help="decode every image and frame")
    sp.add_argument("--strict", action="store_true", help="exit 1 unless every task is found")
    sp.add_argument("--json", help="also write the verdicts as JSON to this file")
    sp = add_launch_options(
        stage("train-embedder", cmd_train_embedder, "contrastive training of the Embedder")
    )
    sp.add_argument("--contrastive", required=True, help="pairs (split/contrastive.parquet)")
    sp.add_argument("--embedder", required=True, help="base Embedder backbone.json")
    sp.add_argument("--datasets", help="per-dataset sampling weights (data/datasets.json)")
    sp.add_argument("--out", required=True, help="output folder: model/, curves, manifest")
    sp.add_argument("--checkpoint-dir", help="resumption checkpoints (default <out>.checkpoints)")
    sp = add_launch_options(
        stage("sft", cmd_sft, "cold-start SFT of the Reasoner on annotated T-CoTs")
    )
    sp.add_argument("--pairs", required=True, help="annotated pairs (split or filter parquet)")
    sp.add_argument("--reasoner", required=True, help="starting Reasoner (backbone.json/folder)")
    sp.add_argument("--out", required=True, help="output folder: model/, backbone.json, logs")
    sp.add_argument("--checkpoint-dir", help="resumption checkpoints (default <out>.checkpoints)")
    sp = add_launch_options(
        stage("egrl", cmd_egrl, "EG-RL: GRPO of the Reasoner guided by the Embedder")
    )
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


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the stage ``argv`` names; ``parser`` replaces :func:`build_parser` (the tests' toy
    stage, tests/fixtures/toy_stage.py, runs through here with its own)."""
    from ume.offline import set_offline_env

    set_offline_env()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = (parser or build_parser()).parse_args(argv)
    try:
        return args.fn(args)
    except UmeError as e:
        print(f"ume {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
