"""The engine's results: frozen dataclasses, one per object of ``tandem stats``'s JSON output.

Fields carry the JSON keys' names and JSON-safe values (``None`` where a figure is
not finite or does not apply); :meth:`Analysis.to_dict` gives the documented JSON object.

>>> Interval(estimate=0.1, ci_low=0.05, ci_high=0.15).to_dict()
{'estimate': 0.1, 'ci_low': 0.05, 'ci_high': 0.15}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def _json_value(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _json_value(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Result:
    """Base of every result: :meth:`to_dict` maps each field to its JSON value, in field order."""

    def to_dict(self) -> dict[str, Any]:
        return {field.name: _json_value(getattr(self, field.name)) for field in fields(self)}


@dataclass(frozen=True)
class Interval(Result):
    """An effect (absolute difference or relative lift) and its interval.

    Under the Bayesian engine the interval is the credible interval and the object also carries
    ``chance_to_win`` (posterior probability that the effect points the metric's good way),
    ``risk`` (expected loss of shipping the treatment: ``E[max(0, -effect)]`` in the good
    direction) and ``risk_control`` (expected loss of keeping the control), as gbstats reports them.
    """

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    chance_to_win: float | None = None
    risk: float | None = None
    risk_control: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.chance_to_win is None:
            for key in ("chance_to_win", "risk", "risk_control"):
                del out[key]
        return out


@dataclass(frozen=True)
class Power(Result):
    """Sample size for the metric's ``mde`` (a relative effect) and the power reached so far."""

    mde_relative: float
    required_n_control: int
    required_n_treatment: int
    power_now: float | None
    target_power: float | None = None  # the planned power of this test (raised for the guardrails)
    alpha: float | None = None  # the level it is planned at
    sides: int | None = None  # 1: a one-sided test, 2: two-sided


@dataclass(frozen=True)
class TestOutcome(Result):
    """One test a comparison took part in: its family (``success``, ``guardrail``, ``deterioration``
    or ``all_metrics``), the family's ``alpha``, the comparison's ``level`` after the correction
    (reject when ``p_value <= level``, equivalently ``adjusted_p_value <= alpha``) and its result."""

    __test__ = False  # not a pytest class

    test: str  # superiority | non_inferiority | deterioration
    family: str
    alpha: float
    level: float | None
    p_value: float | None
    adjusted_p_value: float | None
    significant: bool
    result: str


@dataclass(frozen=True)
class Comparison(Result):
    """One treatment variant against the control on one metric."""

    variant: str
    test: str  # superiority | non_inferiority | insufficient_data
    absolute: Interval
    relative: Interval
    p_value: float | None
    adjusted_p_value: float | None
    significant: bool
    interval_level: float | None
    z: float | None
    df: float | None
    reference: str | None  # None when no test ran (insufficient data)
    status: str
    power: Power | None
    tests: tuple[TestOutcome, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.reference is None:
            del out["reference"]
        return out


@dataclass(frozen=True)
class CupedAdjustment(Result):
    theta: float | None
    variance_reduction: float | None


@dataclass(frozen=True)
class VariantSummary(Result):
    """One variant's raw metric value and, with CUPED, its adjusted mean."""

    name: str
    n: int
    mean: float | None
    adjusted_mean: float | None = None


@dataclass(frozen=True)
class MetricResult(Result):
    name: str
    kind: str
    role: str
    direction: str
    method: str
    non_inferiority_margin: float | None
    cuped: CupedAdjustment | None
    variants: tuple[VariantSummary, ...]
    comparisons: tuple[Comparison, ...]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.cuped is None:
            for variant in out["variants"]:
                del variant["adjusted_mean"]
        return out


@dataclass(frozen=True)
class SrmCheck(Result):
    """The sample ratio mismatch check and where its counts came from (``exposed`` or ``metrics[0].n``)."""

    p_value: float | None
    passed: bool
    chi2: float | None
    observed: Mapping[str, int]
    expected: Mapping[str, float | None]
    threshold: float
    counts_from: str
    test: str = "chi_square"  # the test that decides ``passed``: chi_square | anytime_valid
    anytime_p_value: float | None = None  # Lindon-Malek anytime-valid p-value (valid under peeking)


@dataclass(frozen=True)
class AlwaysValidDesign(Result):
    method: ClassVar[str] = "always_valid"
    tuning_n: int

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method} | super().to_dict()


@dataclass(frozen=True)
class GroupSequentialDesign(Result):
    """The current look's boundary and the alpha spent by it."""

    method: ClassVar[str] = "group_sequential"
    spending: str
    looks: tuple[float, ...]
    information_fraction: float
    boundary_z: float | None
    alpha_spent: float | None
    rho: float | None = None  # the power family's exponent (spending lan_demets_power)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method} | super().to_dict()


SequentialDesign = AlwaysValidDesign | GroupSequentialDesign


@dataclass(frozen=True)
class VariantDecision(Result):
    """One treatment variant's verdict, its reasons, and per metric the tests behind it."""

    verdict: str  # ship | do_not_ship | inconclusive
    reasons: tuple[str, ...]
    tests: Mapping[str, tuple[TestOutcome, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision(Result):
    """The overall verdict, its reasons, and the verdict of each treatment variant."""

    verdict: str
    reasons: tuple[str, ...]
    variants: Mapping[str, VariantDecision]


@dataclass(frozen=True)
class HealthCheck(Result):
    """One data-quality check: ``status`` ok | warning | failed | not_checked, and what it means.
    A ``failed`` check blocks the decision (the verdict is ``inconclusive``)."""

    name: str
    status: str
    message: str
    value: float | None = None


@dataclass(frozen=True)
class Analysis(Result):
    """The whole analysis; :meth:`to_dict` is the JSON ``tandem stats`` writes."""

    alpha: float
    control: str
    correction: str
    metrics: tuple[MetricResult, ...]
    srm: SrmCheck
    sequential: SequentialDesign | None
    decision: Decision
    decision_rule: str = "risk_aware"
    deterioration_alpha: float | None = None
    engine: str = "frequentist"
    health: tuple[HealthCheck, ...] = ()
