"""``stats.timings`` is bounded: months of grants must not grow the daemon's memory (#18 item 9)."""

from __future__ import annotations

from gateway.gate.controller import ControllerStats


def test_timings_keep_only_the_latest() -> None:
    stats = ControllerStats()
    for i in range(50_000):
        stats.timings.append(float(i))
    assert len(stats.timings) <= 1000
    assert stats.timings[-1] == 49_999.0
    assert sorted(stats.timings)[len(stats.timings) // 2] > 40_000, "the latest are kept"
