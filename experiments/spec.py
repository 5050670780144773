"""Experiment specs: YAML on disk, JSON on the compacted ``experiments`` topic.

A spec is validated strictly and every error names the field that is wrong:

>>> parse_spec({"id": "x", "salt": "s", "start": "2026-01-01T00:00:00Z", "end": 1769904000000,
...     "control": "a", "variants": [{"name": "a", "weight": 0.5, "policy": "p"},
...                                  {"name": "b", "weight": 0.5, "policy": "p"}],
...     "metrics": [{"name": "m", "role": "success", "kind": "mean", "direction": "increase",
...                  "measure": "plays", "window": {"length": "0d"}}]})
Traceback (most recent call last):
...
experiments.errors.InvalidSpec: experiment spec: metrics[0].window.length: must be positive

Durations are written ``7d``, ``1h``, ``30m``, ``90s``, ``250ms`` (or compounds such as
``1d12h``) or as integer milliseconds; instants as ISO-8601 with a UTC offset or as
integer milliseconds since the epoch. Both are held as integer milliseconds.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from experiments.errors import InvalidSpec
from experiments.surfaces import RANKER, ParameterValue, PolicyChoice
from experiments.validation import describe, load_yaml
from streams.events import MAX_TS_MS, MIN_TS_MS, EventType

#: The surface of a spec that names none.
DEFAULT_SURFACE = "home"
#: Every layer is cut into this many buckets; experiments of a layer own disjoint ranges.
LAYER_BUCKETS = 10_000
#: The specs shipped with the project.
SPECS_DIR = Path(__file__).resolve().parent / "specs"
#: The two-variant ranker experiment (popularity against LinUCB) the tests and benchmarks build on.
DEMO_SPEC_PATH = SPECS_DIR / "discovery_vs_bandit.yaml"
#: The demo's concurrent experiments on the home surface: the ranker (three variants: popularity,
#: the plays bandit, the long-term-aware bandit; it takes the layer DEMO_SPEC_PATH would), the
#: layout, and the holdout.
DEMO_SPEC_PATHS = (SPECS_DIR / "long_term_bandit.yaml", SPECS_DIR / "home_num_items.yaml",
                   SPECS_DIR / "home_holdout.yaml")

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> int:
    """``"7d"`` → 604800000; integers are milliseconds.

    >>> parse_duration("1d12h"), parse_duration("30m"), parse_duration(250)
    (129600000, 1800000, 250)
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 7d, 1h, 30m or integer milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if text and "".join(n + u for n, u in parts) == text:
            return sum(int(n) * _UNITS_MS[u] for n, u in parts)
    raise ValueError(f"{value!r} is not a duration (write e.g. 7d, 1h, 30m, 90s, 250ms or milliseconds)")


def parse_instant(value: Any) -> int:
    """ISO-8601 with a UTC offset, or integer milliseconds since the epoch → milliseconds."""
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 UTC time or integer milliseconds")
    if isinstance(value, int):
        moment = value
    elif isinstance(value, str | datetime) and not isinstance(value, bool):
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 time") from None
        if parsed.tzinfo is None or parsed.utcoffset() != timedelta(0):
            raise ValueError(f"{value!s} must be UTC (end it with Z or +00:00)")
        moment = int(parsed.astimezone(UTC).timestamp() * 1000)
    elif isinstance(value, date):
        raise ValueError(f"{value!s} is a date: write a time with a UTC offset, e.g. {value}T00:00:00Z")
    else:
        raise ValueError("must be an ISO-8601 UTC time or integer milliseconds")
    if not MIN_TS_MS <= moment < MAX_TS_MS:
        raise ValueError(f"must be between 2000-01-01 and 2100-01-01 (got {moment} ms)")
    return moment


Duration = Annotated[int, BeforeValidator(parse_duration)]
Instant = Annotated[int, BeforeValidator(parse_instant)]
Name = Annotated[str, Field(strict=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
Share = Annotated[float, Field(strict=True, ge=0.0, lt=1.0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Shorthands for common measures, e.g. ``measure: plays``.
MEASURE_SHORTHANDS: dict[str, dict[str, Any]] = {
    "plays": {"agg": "count", "types": ["play"]},
    "skips": {"agg": "count", "types": ["skip"]},
    "likes": {"agg": "count", "types": ["like"]},
    "sessions": {"agg": "count", "types": ["session_start"]},
    "events": {"agg": "count"},
    "ms_played": {"agg": "sum_ms_played"},
    "active": {"agg": "active"},
    "distinct_items": {"agg": "distinct_items"},
    "distinct_genres": {"agg": "distinct_genres"},
}


class Measure(_Spec):
    """What is aggregated per user from ``events`` inside a window; ``types`` None means every type."""

    agg: Literal["count", "sum_ms_played", "active", "distinct_items", "distinct_genres"]
    types: tuple[EventType, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data not in MEASURE_SHORTHANDS:
                raise ValueError(f"unknown measure {data!r} (one of {', '.join(MEASURE_SHORTHANDS)})")
            return MEASURE_SHORTHANDS[data]
        return data

    def selects(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


class Window(_Spec):
    """``[first exposure + delay, first exposure + delay + length)`` in event time."""

    delay: Duration = 0
    length: Duration

    @model_validator(mode="after")
    def _check(self) -> Window:
        _non_negative_field("delay", self.delay)
        _positive_field("length", self.length)
        return self


class Covariate(_Spec):
    """CUPED pre-period: ``[first exposure - length, first exposure)``, same measure as the metric."""

    length: Duration

    @model_validator(mode="after")
    def _check(self) -> Covariate:
        _positive_field("length", self.length)
        return self


def _positive_field(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name}: must be positive")


def _non_negative_field(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name}: must not be negative")


#: Where a metric's figures come from (see ``Metric.source``).
MetricSource = Literal["stream", "batch"]


class Metric(_Spec):
    name: Name
    role: Literal["success", "guardrail"]
    kind: Literal["mean", "proportion", "ratio"]
    direction: Literal["increase", "decrease"]
    window: Window
    measure: Measure | None = None
    numerator: Measure | None = None
    denominator: Measure | None = None
    covariate: Covariate | None = None
    #: Guardrails only: the relative degradation tolerated (0.01 = 1 % worse than control).
    margin: Annotated[float, Field(strict=True, gt=0.0, lt=1.0)] | None = None
    #: Who computes it: ``stream``, the aggregator, from the start; ``batch``, only the batch path
    #: over the archive (a metric added to a running experiment, ``tandem experiments add-metric``).
    source: MetricSource = "stream"

    @model_validator(mode="after")
    def _check(self) -> Metric:
        if self.kind == "ratio":
            for field in ("numerator", "denominator"):
                if getattr(self, field) is None:
                    raise ValueError(f"{field}: required for a ratio metric")
            if self.measure is not None:
                raise ValueError("measure: a ratio metric has numerator and denominator instead")
            if self.covariate is not None:
                raise ValueError("covariate: CUPED is supported for mean and proportion metrics only")
        else:
            if self.measure is None:
                raise ValueError(f"measure: required for a {self.kind} metric")
            for field in ("numerator", "denominator"):
                if getattr(self, field) is not None:
                    raise ValueError(f"{field}: only ratio metrics have one")
            if self.kind == "proportion" and self.measure.agg != "active":
                raise ValueError("measure: a proportion metric needs a 0/1 measure (agg: active)")
        if self.role == "guardrail" and self.margin is None:
            raise ValueError("margin: required for a guardrail (relative non-inferiority margin)")
        if self.role == "success" and self.margin is not None:
            raise ValueError("margin: only guardrails have a non-inferiority margin")
        return self

    @property
    def end_offset(self) -> int:
        """Milliseconds from first exposure to the end of the window."""
        return self.window.delay + self.window.length

    @property
    def pre_length(self) -> int:
        return self.covariate.length if self.covariate is not None else 0

    def measures(self) -> tuple[Measure, ...]:
        if self.kind == "ratio":
            return (self.numerator, self.denominator)  # type: ignore[return-value]
        return (self.measure,)  # type: ignore[return-value]

    def selects(self, event_type: str) -> bool:
        """Whether an event of this type can change the metric's value."""
        return any(m.selects(event_type) for m in self.measures())


class Variant(_Spec):
    """A variant sets some parameters of its experiment's surface (``experiments.surfaces``).

    ``policy: NAME`` with ``policy_params: {...}`` is shorthand for the ``ranker`` parameter,
    ``params: {ranker: {policy: NAME, params: {...}}}``; the spec keeps the long form.
    """

    name: Name
    weight: Annotated[float, Field(strict=True, gt=0.0, le=1.0)]
    params: dict[Name, ParameterValue] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _policy_shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ("policy" not in data and "policy_params" not in data):
            return data
        data = dict(data)
        policy, policy_params = data.pop("policy", None), data.pop("policy_params", {})
        if policy is None:
            raise ValueError("policy: required with policy_params")
        params = dict(data.get("params") or {})
        if RANKER in params:
            raise ValueError(f"params.{RANKER}: set either policy or params.{RANKER}, not both")
        params[RANKER] = {"policy": policy, "params": policy_params}
        data["params"] = params
        return data

    @property
    def ranker(self) -> PolicyChoice | None:
        """The policy this variant serves, if it sets one."""
        value = self.params.get(RANKER)
        return value if isinstance(value, PolicyChoice) else None

    @property
    def policy(self) -> str | None:
        ranker = self.ranker
        return None if ranker is None else ranker.policy

    @property
    def policy_params(self) -> dict[str, float | int | str | bool]:
        ranker = self.ranker
        return {} if ranker is None else dict(ranker.params)


class Layer(_Spec):
    """Experiments of one layer own disjoint ``buckets`` ranges [lo, hi) of the layer hash.

    ``holdout`` is the share of users excluded from every experiment of the layer (served the
    product default); all experiments of a layer must declare the same holdout.
    """

    name: Name
    buckets: tuple[int, int] = (0, LAYER_BUCKETS)
    holdout: Share = 0.0

    @model_validator(mode="after")
    def _check(self) -> Layer:
        lo, hi = self.buckets
        if not 0 <= lo < hi <= LAYER_BUCKETS:
            raise ValueError(f"buckets: need 0 <= lo < hi <= {LAYER_BUCKETS}, got [{lo}, {hi})")
        return self


class Allocation(_Spec):
    """How a bandit experiment moves its weights: every ``every`` of event time, Thompson sampling on
    the success ``metric`` from the streaming aggregates, each variant kept at ``min_weight`` at least."""

    metric: Name
    every: Duration = 86_400_000
    min_weight: Annotated[float, Field(strict=True, ge=0.0, lt=0.5)] = 0.05

    @model_validator(mode="after")
    def _check(self) -> Allocation:
        _positive_field("every", self.every)
        return self


class Period(_Spec):
    """Weights in force from ``start`` (event time) for users who first arrive then: a new version of
    a bandit experiment appends one; users already assigned keep their variant."""

    start: Instant
    weights: dict[Name, Annotated[float, Field(strict=True, ge=0.0, le=1.0)]]


#: Where an experiment is in its life (``experiments.lifecycle`` changes it; serving assigns only ``running``).
Status = Literal["draft", "running", "stopped", "decided"]


class Transition(_Spec):
    """One recorded change of an experiment: a new version of its spec, by whom, when and why."""

    status: Status
    who: Annotated[str, Field(strict=True, min_length=1, max_length=256)]
    at: Instant
    why: Annotated[str, Field(strict=True, max_length=4096)] = ""


class EstimateRecord(_Spec):
    """One off-policy estimate (``experiments.ope``) of a policy's value per decision, with its interval."""

    method: str
    value: float
    ci_low: float
    ci_high: float
    ess: float


class RewardEvaluation(_Spec):
    """A variant's policy against the control's policy on one reward, estimated on the logged decisions."""

    reward: str  # "short_term" (plays per decision) or "long_term" (the surrogate's value per decision)
    candidate: tuple[EstimateRecord, ...]
    baseline: tuple[EstimateRecord, ...]


class VariantEvaluation(_Spec):
    policy: str
    passed: bool
    reasons: tuple[str, ...] = ()
    rewards: tuple[RewardEvaluation, ...] = ()


class Evaluation(_Spec):
    """The evaluation gate's record, published with the spec by ``tandem experiments apply``:
    ``gate`` is ``passed``, or ``skipped`` when ``--no-gate`` was given (then nothing was checked),
    or ``overridden`` when the gate refused a variant (its reasons are in ``variants``) and ``who``
    served it anyway (the demo does, so the A/B test judges what the gate predicted)."""

    gate: Literal["passed", "skipped", "overridden"]
    who: Annotated[str, Field(strict=True, min_length=1, max_length=256)]
    at: Instant
    decisions: int = 0  # logged decisions the estimates are computed on
    surrogate: dict[str, float] = Field(default_factory=dict)  # the surrogate's coefficients used
    variants: dict[Name, VariantEvaluation] = Field(default_factory=dict)


class ExperimentSpec(_Spec):
    """One experiment. ``kind: holdout`` is a surface's holdout: its ``control`` variant (e.g. 5 % of
    users) is served the surface's defaults and no other experiment on the surface; every request
    to the surface exposes it, so the total effect of what runs and shipped can be measured.
    ``kind: bandit`` is a multi-armed bandit experiment: its variant weights are those of the first
    period, and ``periods`` (appended by the allocator) move them for users who arrive later."""

    v: Literal[1] = 1
    id: Name
    salt: Annotated[str, Field(strict=True, min_length=1, max_length=256)]
    unit: Literal["user"] = "user"
    kind: Literal["ab", "holdout", "bandit"] = "ab"
    surface: Name = DEFAULT_SURFACE
    description: str = ""
    variants: Annotated[tuple[Variant, ...], Field(min_length=2)]
    control: Name
    start: Instant
    end: Instant
    layer: Layer | None = None
    alpha: Annotated[float, Field(strict=True, gt=0.0, lt=0.5)] = 0.05
    correction: Literal["none", "bonferroni", "holm", "benjamini-hochberg"] = "holm"
    metrics: Annotated[tuple[Metric, ...], Field(min_length=1)]
    allocation: Allocation | None = None
    periods: tuple[Period, ...] = ()
    status: Status = "running"
    #: Every recorded change, oldest first; ``experiments.lifecycle`` appends, nothing else writes it.
    history: tuple[Transition, ...] = ()
    #: The evaluation gate's record of the variants' policies (``tandem experiments apply``), if it ran.
    evaluation: Evaluation | None = None

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        names = [v.name for v in self.variants]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"variants[{i}].name: duplicate variant {name!r}")
        if abs(sum(v.weight for v in self.variants) - 1.0) > 1e-9:
            raise ValueError("variants: weights must sum to 1")
        if self.control not in names:
            raise ValueError(f"control: {self.control!r} is not one of the variants ({', '.join(names)})")
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        metric_names = [m.name for m in self.metrics]
        for i, name in enumerate(metric_names):
            if name in metric_names[:i]:
                raise ValueError(f"metrics[{i}].name: duplicate metric {name!r}")
        if not any(m.role == "success" and m.source == "stream" for m in self.metrics):
            raise ValueError("metrics: at least one success metric computed by the stream (source: stream) "
                             "is required")
        if self.kind == "holdout":
            if self.layer is not None:
                raise ValueError("layer: a holdout is salted apart from every layer; it has none")
            for i, variant in enumerate(self.variants):
                if variant.params:
                    raise ValueError(f"variants[{i}].params: a holdout's variants set no parameters")
        self._check_bandit(names)
        return self

    def _check_bandit(self, names: list[str]) -> None:
        if self.kind != "bandit":
            if self.allocation is not None or self.periods:
                raise ValueError("allocation: only a bandit experiment (kind: bandit) has an allocation")
            return
        if self.allocation is None:
            raise ValueError("allocation: required for a bandit experiment")
        metric = self.metric(self.allocation.metric)
        if metric is None or metric.role != "success":
            raise ValueError(f"allocation.metric: {self.allocation.metric!r} is not a success metric of the spec")
        before = self.start
        for i, period in enumerate(self.periods):
            if set(period.weights) != set(names):
                raise ValueError(f"periods[{i}].weights: need one weight per variant ({', '.join(names)})")
            if abs(sum(period.weights.values()) - 1.0) > 1e-9:
                raise ValueError(f"periods[{i}].weights: must sum to 1")
            if not before < period.start < self.end:
                raise ValueError(f"periods[{i}].start: must be after the previous period's start and before end")
            before = period.start

    def cutoffs_at(self, at_ms: int | None) -> tuple[tuple[float, str], ...]:
        """The cumulative weights for a user arriving at ``at_ms`` (a bandit's period, else the variants')."""
        period = self.period_at(at_ms)
        if period is None:
            return self.variant_cutoffs
        return _cutoffs([(name, period.weights[name]) for name in (v.name for v in self.variants)])

    def period_at(self, at_ms: int | None) -> Period | None:
        """The bandit period in force at ``at_ms`` (None: the first one, the variants' weights)."""
        if at_ms is None:
            return self.periods[-1] if self.periods else None
        return next((p for p in reversed(self.periods) if p.start <= at_ms), None)

    @property
    def parameters(self) -> frozenset[str]:
        """The surface parameters some variant of this experiment sets: the ones it owns."""
        return frozenset(name for variant in self.variants for name in variant.params)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def stream_metrics(self) -> tuple[Metric, ...]:
        """The metrics the aggregator computes (the others are the batch path's)."""
        return tuple(m for m in self.metrics if m.source == "stream")

    @property
    def batch_metrics(self) -> tuple[Metric, ...]:
        """The metrics computed only in batch, from the archive."""
        return tuple(m for m in self.metrics if m.source == "batch")

    def streamed(self) -> ExperimentSpec:
        """This spec as the stream computes it: its batch-only metrics left out."""
        if not self.batch_metrics:
            return self
        return self.model_copy(update={"metrics": self.stream_metrics})

    @functools.cached_property
    def variant_cutoffs(self) -> tuple[tuple[float, str], ...]:
        """Cumulative weights, for assignment: a unit hashing below ``cutoff`` gets ``variant``."""
        return _cutoffs([(v.name, v.weight) for v in self.variants])

    @property
    def min_end_offset(self) -> int:
        return min(m.end_offset for m in self.metrics)

    @property
    def lookback(self) -> int:
        """How far from a window's close the oldest event it needs can lie."""
        return max(m.end_offset for m in self.metrics) + max(m.pre_length for m in self.metrics)


def _cutoffs(weights: list[tuple[str, float]]) -> tuple[tuple[float, str], ...]:
    total, out = 0.0, []
    for name, weight in weights:
        total += weight
        out.append((total, name))
    return tuple(out[:-1]) + ((2.0, out[-1][1]),)  # the last variant takes rounding slack


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a spec given as a mapping (parsed YAML or JSON)."""
    if not isinstance(data, dict):
        raise InvalidSpec(f"experiment spec: expected a mapping, got {type(data).__name__}")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(f"experiment spec: {describe(exc)}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a YAML spec file; errors start with the file name."""
    return load_yaml(path, parse_spec)


def spec_to_json(spec: ExperimentSpec) -> bytes:
    """Canonical JSON (sorted keys, milliseconds) for the compacted ``experiments`` topic."""
    payload = spec.model_dump(mode="json", exclude_none=True)
    for metric in payload["metrics"]:
        # The default source is left out, so specs without batch metrics keep their bytes.
        if metric.get("source") == "stream":
            del metric["source"]
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def spec_from_json(raw: bytes | str) -> ExperimentSpec:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"experiment spec: malformed JSON ({exc})") from None
    return parse_spec(data)
