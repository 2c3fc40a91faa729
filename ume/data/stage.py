"""The data stage: training pairs (synthetic or the paper's sources) and the synthetic benchmark."""

from __future__ import annotations

from pathlib import Path

from ume.config import Config
from ume.io import Manifest, write_json, write_parquet
from ume.items import check_pairs_frame


def prepare_pairs(cfg: Config, out_dir: str | Path) -> Path:
    """Write ``pairs.parquet`` and ``datasets.json`` (per-dataset size, weight, cap) to out_dir."""
    out = Path(out_dir)
    (out / "media").mkdir(parents=True, exist_ok=True)  # a declared output, even with no media
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
    write_json(out / "datasets.json", stats)
    write_parquet(out / "pairs.parquet", df)
    manifest.record(
        source=cfg.data.source,
        pairs=len(df),
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
