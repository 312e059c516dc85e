"""Optional calibration from a small set of labelled pairs (Platt scaling).

Without labels a pair's probability is the model's own: logit = match_weight × ln 2.
With labels, a straight line on that logit is fitted by logistic regression,
logit' = a × logit + b, pulled towards the identity (a = 1, b = 0) so that a handful of
labels nudges the probabilities rather than overturning them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    a: float = 1.0
    b: float = 0.0

    def sql(self, match_weight: str) -> str:
        """Calibrated probability as SQL over a match-weight column."""
        logit = f"({self.a!r} * ({match_weight}) * ln(2) + {self.b!r})"
        return f"(1.0 / (1.0 + exp(-greatest(least({logit}, 700), -700))))"


def fit(weights: list[float], labels: list[float], strength: float = 5.0) -> Calibration:
    """Fit a, b on (match weight, label in [0, 1]) pairs by penalised Newton steps."""
    if not weights:
        return Calibration()
    xs = [w * math.log(2) for w in weights]
    a, b = 1.0, 0.0
    for _ in range(50):
        ga, gb = strength * (a - 1.0), strength * b  # gradient of the penalty
        haa, hab, hbb = strength, 0.0, strength
        for x, y in zip(xs, labels, strict=True):
            z = max(min(a * x + b, 700.0), -700.0)
            p = 1.0 / (1.0 + math.exp(-z))
            ga += (p - y) * x
            gb += p - y
            s = p * (1.0 - p)
            haa += s * x * x
            hab += s * x
            hbb += s
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) < 1e-9 and abs(db) < 1e-9:
            break
    return Calibration(a=max(a, 1e-3), b=b)
