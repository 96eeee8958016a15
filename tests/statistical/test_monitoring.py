"""Statistical validity of the monitor and of recalibration on real logits (digits pair).

The 900 pooled calibrate+test rows of ``load_digits_pair()`` are the population; a class-prior
shift of it (three classes ten times as likely) is the shifted population. Draws with
replacement are i.i.d. from these finite populations, so the promises can be checked exactly:

1. **Recalibration** (:func:`cascadekit.monitoring.propose_thresholds`): with probability
   >= 1 - delta over an audit sample of the shifted traffic, the population disagreement (kept
   by the student and answered differently from the teacher, which bounds the drop) at the
   proposed threshold is <= epsilon. Over many audit samples the violation rate must not be
   significantly above delta; a plug-in negative control (the cheapest threshold whose *sample*
   disagreement is <= epsilon) must violate far more often.
2. **False alarms** (:class:`cascadekit.monitoring.CascadeMonitor`): on unshifted traffic, the
   alarms per 100k requests must not be significantly above the stated rate (set high here,
   100 per 100k with windows of 200, so that counts are measurable), each stream with its own
   reference drawn from the population.
3. **Power**: on the shifted traffic, the first window after the shift alarms.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, poisson

from cascadekit import scores as sc
from cascadekit.data.digits import load_digits_pair
from cascadekit.monitoring import CascadeMonitor, propose_thresholds

pytestmark = pytest.mark.statistical

EPS, DELTA = 0.05, 0.1
LEVEL = 0.001


@pytest.fixture(scope="module")
def pop() -> dict[str, np.ndarray]:
    pair = load_digits_pair()
    s_log = np.concatenate([pair.logits[k]["student"] for k in ("calibrate", "test")])
    t_log = np.concatenate([pair.logits[k]["teacher"] for k in ("calibrate", "test")])
    y = np.concatenate([pair.labels[k] for k in ("calibrate", "test")])
    return {
        "s": np.asarray(sc.compute_score("margin", s_log), dtype=np.float64),
        "ps": s_log.argmax(1),
        "pt": t_log.argmax(1),
        "y": y,
    }


def _shifted(pop: dict[str, np.ndarray]) -> np.ndarray:
    """Sampling weights of the class-prior shift (the three classes the student gets most
    wrong, ten times as likely)."""
    err = [np.mean((pop["ps"] != pop["y"])[pop["y"] == k]) for k in range(10)]
    hard = np.argsort(err)[::-1][:3]
    w = np.where(np.isin(pop["y"], hard), 10.0, 1.0)
    out: np.ndarray = w / w.sum()
    return out


def _disagreement(pop: dict[str, np.ndarray], w: np.ndarray, t: float) -> float:
    """Population disagreement under weights w at threshold t."""
    return float(np.sum(w * ((pop["s"] >= t) & (pop["ps"] != pop["pt"]))))


def test_recalibration_keeps_its_promise(pop: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    w = _shifted(pop)
    n, trials = 600, 300
    viol = plug_viol = 0
    for _ in range(trials):
        idx = rng.choice(pop["s"].shape[0], size=n, p=w)
        s, ps, pt = pop["s"][idx], pop["ps"][idx], pop["pt"][idx]
        p = propose_thresholds(s, ps, pt, 0.0, EPS, DELTA)
        viol += _disagreement(pop, w, p.new_threshold) > EPS
        # plug-in: the lowest threshold whose sample disagreement is <= epsilon
        order = np.sort(np.unique(s))
        ok = [t for t in order if np.mean((s >= t) & (ps != pt)) <= EPS]
        plug_viol += _disagreement(pop, w, min(ok) if ok else np.inf) > EPS
    assert binom.sf(viol - 1, trials, DELTA) > LEVEL, viol
    assert plug_viol > 2 * max(viol, 10), (plug_viol, viol)


def test_false_alarms_within_the_stated_rate(pop: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    n = pop["s"].shape[0]
    stated, length, streams = 100.0, 100_000, 5
    alarms = 0
    for k in range(streams):
        ref = pop["s"][rng.integers(n, size=3000)]
        t = float(np.quantile(ref, 0.2))
        mon = CascadeMonitor(
            t, reference_scores=ref, window=200, false_alarms_per_100k=stated, random_state=k
        )
        s = pop["s"][rng.integers(n, size=length)]
        mon.update(s, (s < t).astype(np.int64))
        alarms += sum(mon.alarm_counts_.values())
    expected_max = stated * streams * length / 100_000
    assert poisson.sf(alarms - 1, expected_max) > LEVEL, alarms


def test_shift_alarms_in_the_first_window(pop: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    n = pop["s"].shape[0]
    w = _shifted(pop)
    ref = pop["s"][rng.integers(n, size=3000)]
    t = float(np.quantile(ref, 0.2))
    delays = []
    for k in range(20):
        mon = CascadeMonitor(t, reference_scores=ref, window=1000, random_state=k)
        pre = 3000 + int(rng.integers(1000))
        s = pop["s"][rng.integers(n, size=pre)]
        mon.update(s, (s < t).astype(np.int64))
        s = pop["s"][rng.choice(n, size=4000, p=w)]
        alarms = mon.update(s, (s < t).astype(np.int64))
        delays.append(min(a.requests for a in alarms) - pre if alarms else np.inf)
    assert max(delays) < 2000, delays
