"""The append-only result store: records survive a killed writer, a cut tail is dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ume.store import ResultStore, count_records, decode_record, encode_record

pytestmark = pytest.mark.unit


def test_records_round_trip_and_a_damaged_record_is_refused():
    line = encode_record("k", {"text": "héllo", "tokens": 3})
    assert decode_record(line) == ("k", {"text": "héllo", "tokens": 3})
    assert decode_record(line[:-1]) is None  # no newline: cut
    flipped = line.replace(b"tokens", b"tokenz")
    assert decode_record(flipped) is None  # checksum


def test_each_put_is_on_disk_at_once_and_read_back_by_key(tmp_path):
    a = ResultStore(tmp_path, group="annotate")
    a.put("k1", [1])
    a.put("k2", [2])
    # a second process sees both records while the writer is still open
    b = ResultStore(tmp_path, group="annotate")
    assert b.find(["k1", "k2", "k3"]) == {"k1", "k2"}
    assert b.get_many(["k2", "k1"]) == [[2], [1]]
    a.close()


def test_a_writer_killed_mid_stage_keeps_what_it_wrote_and_a_torn_tail_is_dropped(tmp_path, caplog):
    code = (
        "import sys, time\n"
        "from ume.store import ResultStore\n"
        "s = ResultStore(sys.argv[1], group='g')\n"
        "for i in range(100000):\n"
        "    s.put(f'k{i}', {'i': i, 'pad': 'x' * 200})\n"
        "    time.sleep(0.001)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    deadline = time.time() + 60
    while time.time() < deadline and count_records(tmp_path) < 50:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n = count_records(tmp_path)
    assert n >= 50
    seg = next(tmp_path.rglob("seg-*.jsonl"))
    with open(seg, "ab") as fh:  # what a kill in the middle of a write leaves
        fh.write(encode_record("torn", {"i": -1})[:25])
    with open(seg.with_suffix(".idx"), "ab") as fh:
        fh.write(f"torn {seg.stat().st_size - 25} 40\n".encode())
    store = ResultStore(tmp_path, group="g")
    keys = [f"k{i}" for i in range(n)] + ["torn"]
    with caplog.at_level("WARNING"):
        found = store.find(keys)
        assert f"k{n - 1}" in found
        values = {k: store.get(k) for k in found}
    assert values.pop("torn", None) is None  # nothing half-written is taken as done
    assert all(values[f"k{i}"]["i"] == i for i in range(n))
    assert any("dropped" in r.message for r in caplog.records)


def test_memory_only_store(tmp_path):
    s = ResultStore(None)
    s.put("a", 1)
    assert s.find(["a", "b"]) == {"a"} and s.get("a") == 1
