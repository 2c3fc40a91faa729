"""The data stage: training pairs (synthetic or the paper's sources) and the synthetic benchmark."""

from __future__ import annotations

from pathlib import Path

from ume.config import Config
from ume.io import Manifest, make_folder, write_json
from ume.items import check_pairs_frame
from ume.pair_table import RowPolicy, check_pair_rows, write_pair_table


def prepare_pairs(cfg: Config, out_dir: str | Path) -> Path:
    """Write ``pairs.parquet`` and ``datasets.json`` (per-dataset size, weight, cap) to out_dir.

    The rows are checked before they are written (:func:`ume.pair_table.check_pair_rows`,
    ``data.on_bad_item``); media paths under the run folder are stored relative to it.
    """
    out = Path(out_dir)
    make_folder(out / "media")  # a declared output, even with no media
    manifest = Manifest("data", cfg.sections())
    if cfg.data.source == "synthetic":
        from ume.data.synthetic_pairs import write_training_pairs

        df = write_training_pairs(cfg.data.synthetic, out / "media")
        stats = {
            str(name): {"kept": int(n), "weight": 1.0, "cap": None, "skipped": 0}
            for name, n in df["dataset"].value_counts().sort_index().items()
        }
        skipped: list = []
    else:
        from ume.data.sources import load_sources

        df, stats = load_sources(
            cfg.data.real,
            extract_dir=out / "media",
            on_bad_item=cfg.data.on_bad_item,
            seed=cfg.seed,
            num_frames=cfg.data.real.num_frames,
        )
        skipped = [
            dict(s, dataset=name) for name, st in stats.items() for s in st.get("skipped_items", [])
        ]
    check_pairs_frame(df, "prepared pairs")
    # what the next stage will read, checked here so that a bad row never reaches it; the
    # synthetic images are ours and small (decoded in full), the sources' were verified as read
    table = check_pair_rows(
        df,
        f"{out / 'pairs.parquet'} (as prepared)",
        policy=RowPolicy(cfg.data.on_bad_item, "data.on_bad_item"),
        media="verify" if cfg.data.source == "synthetic" else "exists",
        written_by="rule prepare_pairs",
    )
    df = table.df
    if table.skipped:
        for name, st in stats.items():
            st["kept"] = int((df["dataset"] == name).sum())
    write_json(out / "datasets.json", stats)
    write_pair_table(out / "pairs.parquet", df)
    manifest.record(
        source=cfg.data.source,
        pairs=len(df),
        **table.manifest(),
        datasets={
            k: {kk: vv for kk, vv in v.items() if kk != "skipped_items"} for k, v in stats.items()
        },
        skipped=len(skipped),
        skipped_items=skipped[:1000],
    )
    manifest.write(out)
    return out / "pairs.parquet"


def prepare_benchmark(cfg: Config, out_dir: str | Path) -> Path:
    """Write the synthetic benchmark (every synthetic task, in the real layouts) under out_dir."""
    from ume.suites.synth.writer import write_benchmark

    out = Path(out_dir)
    manifest = Manifest("benchmark", cfg.sections())
    summary = write_benchmark(cfg.data.synthetic, out)
    manifest.record(tasks=summary)
    write_json(out / "summary.json", summary)
    manifest.write(out)
    return out / "summary.json"
