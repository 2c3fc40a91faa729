"""Progress bars of long loops (tqdm): live on a terminal, a line every 30 s in a log file.

A stage's log is a file (Snakemake redirects every job's output), where a bar redrawn ten
times a second would fill it; there a bar is redrawn at most every 30 seconds. Bars go to
stderr; ``TQDM_DISABLE=1`` in the environment turns them off.

>>> with progress(len(chats), "reasoning", unit="chat") as bar:  # doctest: +SKIP
...     bar.update(16)
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int, desc: str, *, unit: str = "it") -> tqdm:
    """A bar for ``total`` steps of the loop named ``desc`` (update it with ``.update(n)``)."""
    live = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, mininterval=0.1 if live else 30.0)
