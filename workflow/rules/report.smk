# Leaderboards from the per-task score files: published baselines and this run (plus
# eval.leaderboard_runs) side by side, variants as rows; shown in `snakemake --report`.
# Paths: LEADERBOARD and its CSV tables (leaderboard_csv) are in common.smk.
from itertools import starmap

# The evaluated suites, then the published benchmarks' tables (baselines) if not evaluated.
LEADERBOARD_SUITES = plan.leaderboard_suites(CFG)


rule leaderboard:
    """Markdown/HTML/CSV tables, bar chart, MMEB submission JSONs, notes on published tables."""
    input:
        config=config_of("report"),
        scores=rules.eval.input,
    output:
        md=f"{LEADERBOARD}/leaderboard.md",
        html=report(
            f"{LEADERBOARD}/leaderboard.html",
            category="Leaderboard",
            labels={"table": "all suites"},
        ),
        png=report(
            f"{LEADERBOARD}/leaderboard.png",
            category="Leaderboard",
            labels={"figure": "scores by category"},
        ),
        tables=list(starmap(leaderboard_csv, plan.leaderboard_tables(CFG))),
        summary=f"{LEADERBOARD}/summary.json",
        submissions=directory(f"{LEADERBOARD}/submissions"),
    params:
        eval_dir=lambda w, input: str(Path(input.scores[0]).parents[2]),
        out=lambda w, output: os.path.dirname(output.md),
        suites=" ".join(LEADERBOARD_SUITES),
    log:
        log_of("leaderboard"),
    conda:
        CPU_ENV
    shell:
        "python -m ume leaderboard --config {input.config} --eval-dir {params.eval_dir}"
        " --out {params.out} --suites {params.suites} 2> {log}"


rule leaderboards:
    """Target: the leaderboard."""
    input:
        rules.leaderboard.output,
