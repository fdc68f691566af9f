"""eqt.progress: one line per interval when redirected, ETA from the rate or a time limit."""

from __future__ import annotations

import io

from eqt.progress import Progress, format_duration


def test_redirected_output_is_one_line_per_interval_plus_first_and_last():
    out = io.StringIO()
    bar = Progress(total=1000, what="MD", unit="step", stream=out, interval=3600)
    for step in range(1, 1001):
        bar.update(step, T="300 K")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the first update and the final one, nothing in between
    assert lines[0].startswith("MD: step 1/1000") and lines[-1].startswith("MD: step 1000/1000")
    assert "T 300 K" in lines[-1] and "\r" not in out.getvalue()


def test_eta_is_capped_by_a_time_limit_and_close_shows_the_last_state():
    out = io.StringIO()
    bar = Progress(total=10**9, what="training", unit="epoch", stream=out, interval=3600)
    bar.t0 -= 10.0  # 10 s elapsed
    assert "ETA" in bar.line(10) and "ETA 1 min 05 s" in bar.line(10, time_left=65.0)
    bar.update(1)
    bar.update(5)  # not shown: within the interval
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("training: epoch 5/")
    bar.update(6)  # closed: no more output
    assert len(out.getvalue().splitlines()) == 2


def test_format_duration():
    assert [format_duration(s) for s in (42, 185, 7620, float("nan"))] == ["42 s", "3 min 05 s", "2 h 07 min", "?"]
