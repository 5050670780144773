"""Is the surrogate valid? The effect it predicts against the effect measured, per held-out experiment.

For each past experiment ``E`` (leave one experiment out): fit the surrogate on every
*other* experiment, predict the long-term outcome of ``E``'s units from their short-term
signals, and compare, per treatment variant against ``E``'s control,

- the **surrogate effect**: difference in mean predicted outcome, with a Welch interval;
- the **realized effect**: difference in mean realized outcome, with a Welch interval.

The surrogate effect's interval reflects the sampling of ``E``'s units only (the model is
fixed, fitted elsewhere). ``agrees`` says whether the realized effect's point lies in
the surrogate effect's interval widened by the realized one's own noise, i.e. whether the
two intervals' difference covers zero: a surrogate that misses the mechanism shows up
as experiments where it does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from experiments.surrogate.errors import InvalidSurrogateData
from experiments.surrogate.model import Surrogate, SurrogateRow, fit_surrogate
from experiments.surrogate.signals import SIGNALS


@dataclass(frozen=True, slots=True)
class EffectInterval:
    """Treatment − control difference in means with its Welch interval."""

    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    confidence: float

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


@dataclass(frozen=True, slots=True)
class ValidityRow:
    """One treatment variant of one held-out experiment."""

    experiment: str
    variant: str
    control: str
    units: int
    surrogate_effect: EffectInterval
    realized_effect: EffectInterval
    agrees: bool


@dataclass(frozen=True, slots=True)
class Validity:
    rows: tuple[ValidityRow, ...]
    confidence: float

    @property
    def agreement(self) -> float:
        """Share of held-out comparisons where surrogate and realized effects agree."""
        return sum(r.agrees for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def sign_agreement(self) -> float:
        """Share where the surrogate effect has the sign of the realized one."""
        if not self.rows:
            return math.nan
        same = sum(math.copysign(1, r.surrogate_effect.estimate) == math.copysign(1, r.realized_effect.estimate)
                   for r in self.rows)
        return same / len(self.rows)


def difference(control: Sequence[float], treatment: Sequence[float], *, confidence: float = 0.95) -> EffectInterval:
    """Welch's interval of ``mean(treatment) − mean(control)``."""
    if len(control) < 2 or len(treatment) < 2:
        raise InvalidSurrogateData("difference: each arm needs at least 2 units")
    c, t = np.asarray(control, float), np.asarray(treatment, float)
    vc, vt = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    se = math.sqrt(vc + vt)
    estimate = float(t.mean() - c.mean())
    if se == 0.0:
        return EffectInterval(estimate, 0.0, estimate, estimate, confidence)
    df = (vc + vt) ** 2 / (vc**2 / (c.size - 1) + vt**2 / (t.size - 1)) if vc or vt else math.inf
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    return EffectInterval(estimate, se, estimate - q * se, estimate + q * se, confidence)


def validate(
    rows: Iterable[SurrogateRow], *, controls: Mapping[str, str], signals: Sequence[str] = SIGNALS,
    l2: float = 1.0, confidence: float = 0.95,
) -> Validity:
    """Leave-one-experiment-out validity (module docstring); ``controls`` maps experiment → control variant."""
    by_experiment: dict[str, list[SurrogateRow]] = {}
    for row in rows:
        by_experiment.setdefault(row.experiment, []).append(row)
    if len(by_experiment) < 2:
        raise InvalidSurrogateData("rows: validity needs at least 2 past experiments")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    out: list[ValidityRow] = []
    for experiment in sorted(by_experiment):
        control = controls.get(experiment)
        if control is None:
            raise InvalidSurrogateData(f"controls.{experiment}: no control variant given")
        training = [r for e, rs in by_experiment.items() if e != experiment for r in rs]
        model = fit_surrogate(training, signals=signals, l2=l2)
        out.extend(_compare(model, experiment, control, by_experiment[experiment], confidence, z))
    return Validity(tuple(out), confidence)


def _compare(model: Surrogate, experiment: str, control: str, rows: list[SurrogateRow], confidence: float,
             z: float) -> list[ValidityRow]:
    by_variant: dict[str, list[SurrogateRow]] = {}
    for row in rows:
        by_variant.setdefault(row.variant, []).append(row)
    if control not in by_variant:
        raise InvalidSurrogateData(f"{experiment}: no unit in control variant {control!r}")
    base = by_variant[control]
    base_predicted = [model.predict(r.signals) for r in base]
    base_realized = [r.outcome for r in base]
    out = []
    for variant in sorted(by_variant):
        if variant == control:
            continue
        treated = by_variant[variant]
        predicted = difference(base_predicted, [model.predict(r.signals) for r in treated], confidence=confidence)
        realized = difference(base_realized, [r.outcome for r in treated], confidence=confidence)
        gap_se = math.hypot(predicted.std_error, realized.std_error)
        agrees = abs(predicted.estimate - realized.estimate) <= z * gap_se
        out.append(ValidityRow(experiment, variant, control, len(base) + len(treated), predicted, realized, agrees))
    return out
