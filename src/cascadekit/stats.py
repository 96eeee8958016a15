"""Significance tests for comparing two classifiers (or cascades) on the same inputs.

:func:`mcnemar` is the paired test EBJR reports (after Dietterich 1998): only the inputs on
which exactly one of the two is right count. ``b`` = A right and B wrong, ``c`` = A wrong and
B right. It reports the exact (binomial) p-value, the continuity-corrected chi-square p-value
and the matched-pairs odds ratio ``b / c`` with a 95% confidence interval.

McNemar compares accuracy only: to compare two routers fairly, pick operating points with the
same teacher share (or cost) first.

Examples
--------
>>> import numpy as np
>>> from cascadekit.stats import mcnemar
>>> a = np.r_[np.ones(60), np.zeros(20), np.ones(20)]
>>> b = np.r_[np.zeros(60), np.ones(20), np.ones(20)]
>>> r = mcnemar(a, b)
>>> r.b, r.c, round(r.odds_ratio, 2), r.p_exact < 1e-5
(60, 20, 3.0, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binom, chi2

from ._validation import as_correct, check_same_samples

__all__ = ["McNemarResult", "mcnemar"]

_Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test of two paired 0/1 correctness vectors.

    Attributes
    ----------
    b : int
        Inputs where A is right and B wrong.
    c : int
        Inputs where A is wrong and B right.
    n : int
        All inputs (the concordant ones do not enter the test).
    p_exact : float
        Two-sided exact p-value ``min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))``; 1.0 when
        ``b + c == 0``.
    statistic : float
        Continuity-corrected chi-square ``(|b - c| - 1)^2 / (b + c)`` (Edwards; the same
        form as statsmodels, so ``b == c`` gives ``1 / (b + c)``); 0.0 when ``b + c == 0``.
    p_corrected : float
        ``P(chi2_1 >= statistic)``; 1.0 when ``b + c == 0``.
    odds_ratio : float
        ``b / c``: how many discordant inputs A wins per one it loses. ``inf`` when ``c == 0 <
        b``, 0.0 when ``b == 0 < c``, NaN when ``b == c == 0``.
    ci_low, ci_high : float
        95% Wald interval ``exp(ln(b/c) -+ 1.96 sqrt(1/b + 1/c))``. Undefined (NaN) when
        ``b`` or ``c`` is 0.
    """

    b: int
    c: int
    n: int
    p_exact: float
    statistic: float
    p_corrected: float
    odds_ratio: float
    ci_low: float
    ci_high: float

    @property
    def a_better(self) -> bool:
        """True when A wins more discordant inputs than it loses."""
        return self.b > self.c

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (``inf`` and NaN become ``None``).

        Examples
        --------
        >>> mcnemar([1, 1, 0], [0, 1, 0]).to_dict()["odds_ratio"] is None
        True
        """
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
            else:
                out[k] = v
        return out


def mcnemar(correct_a: ArrayLike, correct_b: ArrayLike) -> McNemarResult:
    """McNemar's test: are A and B equally accurate on the same inputs?

    Parameters
    ----------
    correct_a, correct_b : array-like of shape (n_samples,)
        1 (or True) where A (resp. B) is right, on the same inputs in the same order.

    Returns
    -------
    McNemarResult

    Examples
    --------
    >>> r = mcnemar([1, 1, 1, 0, 1, 0], [0, 0, 1, 1, 1, 0])
    >>> r.b, r.c, round(r.p_exact, 3), r.odds_ratio
    (2, 1, 1.0, 2.0)
    """
    a = as_correct(correct_a, "correct_a")
    bb = as_correct(correct_b, "correct_b")
    check_same_samples([("correct_a", a.shape[0]), ("correct_b", bb.shape[0])])
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    m = b + c
    if m == 0:
        p_exact, stat, p_corr = 1.0, 0.0, 1.0
    else:
        p_exact = float(min(1.0, 2.0 * binom.cdf(min(b, c), m, 0.5)))
        stat = float((abs(b - c) - 1) ** 2 / m)
        p_corr = float(chi2.sf(stat, 1))
    if b > 0 and c > 0:
        ratio = b / c
        half = _Z95 * math.sqrt(1.0 / b + 1.0 / c)
        lo, hi = math.exp(math.log(ratio) - half), math.exp(math.log(ratio) + half)
    else:
        ratio = math.inf if b > 0 else (0.0 if c > 0 else math.nan)
        lo = hi = math.nan
    return McNemarResult(
        b=b,
        c=c,
        n=int(a.shape[0]),
        p_exact=p_exact,
        statistic=stat,
        p_corrected=p_corr,
        odds_ratio=float(ratio),
        ci_low=lo,
        ci_high=hi,
    )
