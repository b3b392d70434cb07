"""The seen-message table: redeliveries are dropped, also after a restart; it stays bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path

from channels.dedupe import SeenStore


def test_a_redelivery_is_caught_also_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "seen.jsonl"
    seen = SeenStore(path)
    assert seen.first_time("telegram", "42", "1001") and not seen.first_time("telegram", "42", "1001")
    assert seen.first_time("telegram", "43", "1001")  # another chat's message with the same id
    assert seen.first_time("telegram", "42", None) and seen.first_time("telegram", "42", None)  # no id
    again = SeenStore(path)
    assert again.seen("telegram", "42", "1001") and not again.first_time("telegram", "43", "1001")
    assert path.stat().st_mode & 0o777 == 0o600


def test_expired_entries_and_a_torn_line_are_dropped_when_it_loads(tmp_path: Path) -> None:
    path = tmp_path / "seen.jsonl"
    old, new = time.time() - 8 * 86400, time.time()
    path.write_text(json.dumps(["telegram\x1f1\x1f5", old]) + "\n" + json.dumps(["telegram\x1f1\x1f6", new])
                    + "\n" + '["telegram\\u001f1\\u001f7", 17')  # cut short by a crash
    seen = SeenStore(path, ttl=7 * 86400)
    assert not seen.seen("telegram", "1", "5") and seen.seen("telegram", "1", "6")
    assert not seen.seen("telegram", "1", "7")
    assert [json.loads(line)[0] for line in path.read_text().splitlines()] == ["telegram\x1f1\x1f6"]


def test_only_the_newest_entries_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "seen.jsonl"
    seen = SeenStore(path, max_entries=100)
    for n in range(250):
        seen.add("slack", "C1", str(n))
    kept = [n for n in range(250) if seen.seen("slack", "C1", str(n))]
    assert 90 <= len(kept) <= 100 and kept == list(range(250 - len(kept), 250))
    assert len(path.read_text().splitlines()) == len(kept)  # the file was rewritten with them
    reloaded = [n for n in range(250) if SeenStore(path, max_entries=100).seen("slack", "C1", str(n))]
    assert reloaded == kept[-90:]  # a load keeps the newest nine tenths, leaving room to grow


def test_a_rewrite_keeps_the_entries_it_holds_instead_of_reading_them_back(tmp_path: Path) -> None:
    import tracemalloc
    seen = SeenStore(tmp_path / "seen.jsonl", max_entries=10_000)
    for n in range(10_000):
        seen.add("telegram", "42", str(n))
    tracemalloc.start()
    try:
        seen.add("telegram", "42", "10000")  # one over: the table is trimmed and the file rewritten
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len((tmp_path / "seen.jsonl").read_text().splitlines()) == 9_000
    assert peak - current < 1_000_000, (current, peak)  # reading 10,000 lines back took 2.5 MB more


def test_a_rewrite_that_cannot_be_written_keeps_serving(tmp_path: Path) -> None:
    path = tmp_path / "seen.jsonl"
    seen = SeenStore(path, max_entries=10)
    path.with_suffix(".tmp").mkdir()  # the rewrite's temporary file cannot be created
    for n in range(25):
        assert seen.first_time("telegram", "42", str(n))
    assert seen.seen("telegram", "42", "24") and not seen.first_time("telegram", "42", "24")
    assert len(path.read_text().splitlines()) == 25  # appended to, never cut short
