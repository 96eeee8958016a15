"""The report's building blocks: numbers and rules for people, the threshold knob's embedded
curve, the self-contained page, and the score histogram on a readable scale."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cascadekit import curves, scores
from cascadekit.data.digits import load_digits_pair
from cascadekit.errors import EmptyInputError, InputShapeError
from cascadekit.report import (
    Section,
    describe_router,
    evaluate_report,
    format_count,
    format_ratio,
    plot_evaluation,
    plot_score_histogram,
    threshold_knob_html,
    write_html,
)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (8_482_000.0, "FLOPs", "8.48 M FLOPs"),
        (203_264.0, "", "203 k"),
        (5.64e9, "", "5.64 G"),
        (0.5, "", "0.5"),
        (None, "", "-"),
        (float("inf"), "", "-"),
    ],
)
def test_format_count(value: float | None, unit: str, text: str) -> None:
    assert format_count(value, unit) == text


def test_format_ratio() -> None:
    assert format_ratio(1.6234) == "1.62x" and format_ratio(None) == "-"


def test_describe_router_in_words() -> None:
    text = describe_router("max_softmax", 0.71, 7.773)
    assert "{" not in text and "at temperature 0.71" in text
    assert "top class probability is at least 0.99958" in text  # sigmoid(7.773) = 0.999579
    assert "entropy is at most" in describe_router("entropy", 0.25, 2.0)
    assert "at temperature" not in describe_router("margin", 1.0, 0.5)
    assert describe_router("margin", 1.0, None).startswith("Every input goes on")


def _knob_data(html: str) -> dict:
    return json.loads(re.search(r'id="knob-data">(.*?)</script>', html, re.S).group(1))


def test_knob_starts_at_the_operating_point_of_real_scores() -> None:
    pair = load_digits_pair()
    test, y = pair.logits["test"], pair.labels["test"]
    s = scores.margin(test["student"])
    cs, ct = curves.correctness(test["student"], y), curves.correctness(test["teacher"], y)
    curve = curves.cascade_curve(s, cs, ct, costs=[384, 9472])
    t = float(np.quantile(s, 0.37))
    kept = s >= t
    share, acc = float(np.mean(~kept)), float(np.mean(np.where(kept, cs, ct)))
    d = _knob_data(threshold_knob_html(curve, teacher_cost=9472, start_share=share, max_points=25))
    k = d["start"]
    assert len(d["accuracy"]) <= 26 and d["share"][0] == 0.0 and d["share"][-1] == 1.0
    assert d["share"][k] == pytest.approx(share) and d["accuracy"][k] == pytest.approx(acc)
    assert d["cost"][-1] == pytest.approx(384 + 9472)  # everything ran both stages
    assert d["threshold"][-1] is None  # +inf: every input moves on


def test_page_is_self_contained(tmp_path: Path) -> None:
    c = curves.cascade_curve(np.arange(6.0), [1, 0, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1])
    page = tmp_path / "r.html"
    write_html(
        page,
        "t <x>",
        [Section("A table", "How to read it.", ["a", "b"], [["x", 0.123456]])],
        notes=["note & more"],
        knob=threshold_knob_html(c, teacher_cost=2.0),
    )
    html = page.read_text()
    assert "<p>How to read it.</p>" in html and "note &amp; more" in html and "0.1235" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # nothing fetched
    assert 'type="range"' in html


def test_histogram_ranks_separate_right_and_wrong() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pair = load_digits_pair()
    test, y = pair.logits["test"], pair.labels["test"]
    s = scores.entropy(test["student"], temperature=0.25)
    c = curves.correctness(test["student"], y)
    fig, ax = plt.subplots()
    t = float(np.quantile(s, 0.3))
    plot_score_histogram(ax, s, c, t)
    # on the rank scale the bars spread over [0, 1]; the threshold sits at the share moving on
    heights = [p.get_height() for p in ax.patches]
    assert sum(h > 0 for h in heights) > 20
    (line,) = ax.get_lines()
    assert line.get_xdata()[0] == pytest.approx(np.mean(s < t))
    plt.close(fig)


def test_plot_evaluation_takes_one_array_per_stage(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    pair = load_digits_pair()
    test, y = pair.logits["test"], pair.labels["test"]
    outs = [test["student"], test["teacher"]]
    rep = evaluate_report(outs, y, score="entropy", costs=[1.0, 4.0])
    s = scores.entropy(test["student"])
    c = [curves.correctness(o, y) for o in outs]
    png = tmp_path / "r.png"
    plot_evaluation(rep, png, stage_scores=[s], stage_correct=c)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(
        InputShapeError, match=r"Expected stage_scores\[0\] of shape \(n_samples,\)"
    ):
        plot_evaluation(rep, png, stage_scores=s, stage_correct=c)  # one stage's array, unwrapped
    with pytest.raises(EmptyInputError, match="stage_correct"):
        plot_evaluation(rep, png, stage_scores=[s], stage_correct=[])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_knob_runs_in_a_real_browser(tmp_path: Path) -> None:
    pair = load_digits_pair()
    test, y = pair.logits["test"], pair.labels["test"]
    s = scores.margin(test["student"])
    cs, ct = curves.correctness(test["student"], y), curves.correctness(test["teacher"], y)
    curve = curves.cascade_curve(s, cs, ct, costs=[384, 9472])
    page = tmp_path / "r.html"
    knob = threshold_knob_html(curve, teacher_cost=9472, start_share=0.25)
    write_html(page, "knob", [], knob=knob)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # the inline script ran: it drew the curve and wrote the operating point's figures
    d = _knob_data(knob)
    text = re.search(r'id="knob-text"[^>]*>(.*?)</p>', dom, re.S).group(1)
    assert f"accuracy {d['accuracy'][d['start']]:.4f}" in text
    assert f"{100 * d['share'][d['start']]:.1f}% of inputs to the teacher" in text
    assert "<polyline" in dom and "<circle" in dom
    shot = tmp_path / "shot.png"
    script = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_report.sh"
    subprocess.run(["bash", str(script), str(page), str(shot), "800", "600"], check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
