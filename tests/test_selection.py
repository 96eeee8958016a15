"""Score comparison and selection: a reference loop, ties, baselines, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cascadekit import curves, selection
from cascadekit.data.digits import load_digits_pair
from cascadekit.errors import ParameterError, UnknownNameError
from cascadekit.scores import compute_score


@pytest.fixture(scope="module")
def select_split():
    pair = load_digits_pair()
    z = pair.logits["select"]["student"]
    cs, ct = pair.correct("select", "student"), pair.correct("select", "teacher")
    return z, cs, ct, [pair.flops["student"], pair.flops["teacher"]]


def _reference(z, cs, ct, costs, criterion):
    """Brute force: every (score, temperature), the first best temperature per score."""
    out = []
    for name in selection.SCORES:
        temps = selection.TEMPERATURES if name in selection.TEMPERATURE_SCORES else (1.0,)
        vals = []
        for t in temps:
            c = curves.cascade_curve(compute_score(name, z, t), cs, ct, costs)
            s = curves.summarize(c, cs, ct)
            vals.append(
                s["gap_captured" if criterion == "gap_captured" else "speedup_at_teacher_accuracy"]
            )
        i = int(np.argmax(vals))
        out.append((name, temps[i], vals[i]))
    return out


@pytest.mark.parametrize("criterion", selection.CRITERIA)
def test_compare_scores_matches_a_reference_loop(select_split, criterion) -> None:
    z, cs, ct, costs = select_split
    rows = selection.compare_scores(z, cs, ct, costs, criterion=criterion)
    want = _reference(z, cs, ct, costs, criterion)
    assert [(r.score, r.temperature, r.value) for r in rows] == want
    best = selection.select_score(z, cs, ct, costs, criterion=criterion)
    assert best == max(rows, key=lambda r: r.value)
    np.testing.assert_array_equal(best.scores(z), compute_score(best.score, z, best.temperature))


def test_one_temperature_grid_with_one_on_it() -> None:
    assert 1.0 in selection.TEMPERATURES and len(selection.TEMPERATURES) == 11
    assert selection.TEMPERATURES[0] == 0.25 and selection.TEMPERATURES[-1] == 8.0


def test_ties_go_to_the_first_candidate() -> None:
    # margin and max_logit rank these inputs the same way: equal criterion, margin listed first
    z = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    cs, ct = np.array([1, 1, 0, 0], bool), np.ones(4, bool)
    best = selection.select_score(z, cs, ct, scores=("margin", "max_logit"))
    assert best.score == "margin" and best.value == 1.0
    best = selection.select_score(z, cs, ct, scores=("max_logit", "margin"))
    assert best.score == "max_logit"


def test_baselines_are_the_random_and_oracle_curves(select_split) -> None:
    _, cs, ct, costs = select_split
    base = selection.baselines(cs, ct, costs)
    rnd = curves.summarize(curves.random_curve(cs.mean(), ct.mean(), costs=costs), cs, ct)
    orc = curves.summarize(curves.oracle_curve(cs, ct, costs=costs), cs, ct)
    for key in ("auc", "random_auc", "oracle_auc", "gap_captured", "apgr"):
        assert base["random"][key] == pytest.approx(rnd[key])
        assert base["oracle"][key] == pytest.approx(orc[key])
    assert base["random"]["speedup_at_teacher_accuracy"] == rnd["speedup_at_teacher_accuracy"]
    # the oracle reaches the teacher at share acc_T - acc_S (between the curve's points)
    assert base["oracle"]["teacher_share_at_teacher_accuracy"] == pytest.approx(
        ct.mean() - cs.mean()
    )
    assert base["oracle"]["speedup_at_teacher_accuracy"] >= orc["speedup_at_teacher_accuracy"]


def test_bad_input(select_split) -> None:
    z, cs, ct, _ = select_split
    with pytest.raises(
        ParameterError, match="Expected criterion in gap_captured, speedup; got 'auc'"
    ):
        selection.select_score(z, cs, ct, criterion="auc")
    with pytest.raises(UnknownNameError, match="Unknown score 'nope'"):
        selection.compare_scores(z, cs, ct, scores=("margin", "nope"))
    with pytest.raises(ParameterError, match="at least one score to compare; got none"):
        selection.compare_scores(z, cs, ct, scores=())
    with pytest.raises(ParameterError, match="at least one temperature; got an empty"):
        selection.tune_temperature("energy", z, cs, ct, temperatures=[])
    assert math.isfinite(selection.tune_temperature("margin", z, cs, ct, temperatures=[]).value)


def test_report_tunes_each_score_on_the_select_split() -> None:
    import jsonschema

    from cascadekit.report import evaluate_all_scores, evaluate_report
    from cascadekit.schemas import load_schema

    pair = load_digits_pair()
    sel, test = pair.logits["select"], pair.logits["test"]
    costs = [pair.flops["student"], pair.flops["teacher"]]
    rep = evaluate_all_scores(
        [test["student"], test["teacher"]],
        pair.labels["test"],
        costs=costs,
        scores=list(selection.SCORES),
        select_outputs=[sel["student"], sel["teacher"]],
        select_labels=pair.labels["select"],
    )
    jsonschema.validate(rep, load_schema("evaluate"))
    cs, ct = pair.correct("select", "student"), pair.correct("select", "teacher")
    for row in selection.compare_scores(sel["student"], cs, ct, costs):
        block = rep["scores"][row.score]
        assert block["temperature"] == row.temperature
        assert block["temperature_chosen_on"] == "select"
        one = evaluate_report(
            [test["student"], test["teacher"]],
            pair.labels["test"],
            costs=costs,
            score=row.score,
            temperature=row.temperature,
        )
        assert block["gap_captured"] == one["gap_captured"]
    with pytest.raises(ParameterError, match="both select_outputs and select_labels"):
        evaluate_all_scores(
            [test["student"], test["teacher"]],
            pair.labels["test"],
            select_outputs=[sel["student"], sel["teacher"]],
        )
    with pytest.raises(ParameterError, match="select split needs 2 stages; got 3"):
        evaluate_all_scores(
            [test["student"], test["student"], test["teacher"]],
            pair.labels["test"],
            select_outputs=[sel["student"], sel["student"], sel["teacher"]],
            select_labels=pair.labels["select"],
        )
