"""The engine's JSON input: pydantic models (``extra="forbid"``, strict types) plus cross-field checks.

Every problem is reported with the path of the field, e.g.
``metrics[1].variants[0].n: must be >= 0``.

Schema (see the README section "Statistics from a file" for an example)::

    {"alpha": 0.05,                     # two-sided level, 0 < alpha < 0.5
     "control": "control",              # must be a variant of every metric
     "correction": "holm",              # none | bonferroni | holm | bh (success metrics under risk_aware)
     "decision_rule": "risk_aware",     # risk_aware | all_metrics_corrected
     "deterioration_alpha": 0.05,       # optional, default alpha; risk_aware only, 0 < x < 0.5
     "engine": "frequentist",           # frequentist | bayesian (gbstats' default flat prior)
     "power": 0.8,                      # target power of the sample sizes (metrics with mde)
     "srm_threshold": 0.001,            # optional
     "srm_test": "chi_square",          # optional; anytime_valid by default with sequential
     "health": {"multiple_exposures": 0, "late_records": 0, "records": 0},  # optional
     "expected_weights": {"control": 1, "treatment": 1},   # optional, default equal
     "exposed": {"control": 5012, "treatment": 4988},      # optional SRM counts
     "sequential": {...},               # optional, see SequentialInput
     "metrics": [{"name": "minutes", "kind": "mean", "role": "success",
                  "direction": "increase", "method": "welch",
                  "non_inferiority_margin": null, "mde": null,
                  "variants": [{"name": "control", "n": 5000, "sum": ..., "sum_sq": ...}, ...]}]}

The SRM check counts each variant's ``exposed`` users when given, else the ``n`` of the
first metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experiments.stats.errors import InvalidStatsInput

_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class VariantInput(BaseModel):
    model_config = _CONFIG
    name: str = Field(min_length=1)
    n: int = Field(ge=0)
    sum: float
    sum_sq: float | None = None
    den_sum: float | None = None
    den_sum_sq: float | None = None
    cross_sum: float | None = None
    pre_sum: float | None = None
    pre_sum_sq: float | None = None
    pre_cross_sum: float | None = None


class MetricInput(BaseModel):
    model_config = _CONFIG
    name: str = Field(min_length=1)
    kind: Literal["mean", "proportion", "ratio"]
    role: Literal["success", "guardrail"]
    direction: Literal["increase", "decrease"] = "increase"
    method: Literal["welch", "z"] | None = None  # ratio: z (default) or welch on the delta-method variance
    non_inferiority_margin: float | None = Field(default=None, ge=0.0, lt=1.0)
    mde: float | None = Field(default=None, gt=0.0)
    variants: list[VariantInput] = Field(min_length=2)


class SequentialInput(BaseModel):
    """``group_sequential``: ``information_fraction`` (current share of the planned sample, required)
    and ``looks`` (fractions of the earlier looks; the current one may be repeated at the end);
    ``spending`` ``obrien_fleming`` (default) or ``power`` with its exponent ``rho`` (default 2).
    ``always_valid``: ``tuning_n``, gbstats' ``sequential_tuning_parameter`` (total users in a
    comparison where the sequence is tightest, default 5 000 as in gbstats)."""

    model_config = _CONFIG
    method: Literal["group_sequential", "always_valid"]
    information_fraction: float | None = Field(default=None, gt=0.0, le=1.0)
    looks: list[float] | None = None
    spending: Literal["obrien_fleming", "power"] | None = None
    rho: float | None = Field(default=None, gt=0.0)
    tuning_n: int | None = Field(default=None, gt=0)


class HealthInput(BaseModel):
    """Counts the aggregation knows and the statistics cannot see: users exposed to more than one
    variant, and records that arrived after their window closed (out of ``records``)."""

    model_config = _CONFIG
    multiple_exposures: int | None = Field(default=None, ge=0)
    late_records: int | None = Field(default=None, ge=0)
    records: int | None = Field(default=None, ge=0)


class StatsInput(BaseModel):
    model_config = _CONFIG
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    control: str = Field(min_length=1)
    correction: Literal["none", "bonferroni", "holm", "bh"] = "holm"
    decision_rule: Literal["risk_aware", "all_metrics_corrected"] = "risk_aware"
    deterioration_alpha: float | None = Field(default=None, gt=0.0, lt=0.5)
    engine: Literal["frequentist", "bayesian"] = "frequentist"
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    srm_test: Literal["chi_square", "anytime_valid"] | None = None
    srm_threshold: float = Field(default=0.001, gt=0.0, lt=1.0)
    metrics: list[MetricInput] = Field(min_length=1)
    expected_weights: dict[str, float] | None = None
    exposed: dict[str, int] | None = None
    sequential: SequentialInput | None = None
    health: HealthInput | None = None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        key = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}[kind]
        return f"must be {bounds[kind]} {ctx[key]}"
    simple = {
        "missing": "required field is missing",
        "extra_forbidden": "unknown field",
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "string_type": "must be a string",
        "dict_type": "must be an object",
        "list_type": "must be a list",
        "model_type": "must be an object",
        "finite_number": "must be a finite number",
        "too_short": f"needs at least {ctx.get('min_length', 1)} item(s)",
        "string_too_short": "must not be empty",
    }
    if kind in simple:
        return simple[kind]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return str(err["msg"])


def parse_input(data: Any) -> StatsInput:
    """Validate ``data`` (already decoded JSON) or raise :class:`InvalidStatsInput`."""
    if not isinstance(data, dict):
        raise InvalidStatsInput([("", "input must be a JSON object")])
    try:
        parsed = StatsInput.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p not in ("float", "int", "str", "function-after"))
            problems.append((_path(loc), _message(err)))
        raise InvalidStatsInput(problems) from None
    problems = _cross_checks(parsed)
    if problems:
        raise InvalidStatsInput(problems)
    return parsed


def _consistent(n: int, total: float, total_sq: float) -> bool:
    """Cauchy-Schwarz: ``sum_sq * n >= sum**2`` up to rounding."""
    return total_sq * n - total * total >= -1e-9 * max(1.0, total * total)


def _check_variant(m: MetricInput, v: VariantInput, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if m.kind == "proportion":
        if not 0 <= v.sum <= v.n:
            out.append((f"{where}.sum", f"a proportion needs 0 <= sum <= n (= {v.n})"))
        if v.sum_sq is not None and abs(v.sum_sq - v.sum) > 1e-9 * max(1.0, abs(v.sum)):
            out.append((f"{where}.sum_sq", "for a proportion (0/1 values) sum_sq must equal sum"))
    elif v.sum_sq is None:
        out.append((f"{where}.sum_sq", f"required for kind {m.kind!r}"))
    elif not _consistent(v.n, v.sum, v.sum_sq):
        out.append((f"{where}.sum_sq", "inconsistent with sum and n (sum_sq * n < sum ** 2)"))
    ratio_fields = ("den_sum", "den_sum_sq", "cross_sum")
    if m.kind == "ratio":
        for f in ratio_fields:
            if getattr(v, f) is None:
                out.append((f"{where}.{f}", "required for kind 'ratio'"))
        if v.den_sum_sq is not None and v.den_sum is not None and not _consistent(v.n, v.den_sum, v.den_sum_sq):
            out.append((f"{where}.den_sum_sq", "inconsistent with den_sum and n (den_sum_sq * n < den_sum ** 2)"))
    else:
        out += [(f"{where}.{f}", "only for kind 'ratio'") for f in ratio_fields if getattr(v, f) is not None]
    pre = ("pre_sum", "pre_sum_sq", "pre_cross_sum")
    given = [getattr(v, f) is not None for f in pre]
    if any(given) and m.kind == "ratio":
        out.append((f"{where}.pre_sum", "CUPED covariates are supported for kinds 'mean' and 'proportion' only"))
    elif any(given) and not all(given):
        missing = [f for f, g in zip(pre, given, strict=True) if not g]
        out += [(f"{where}.{f}", "required when any pre_* field is given") for f in missing]
    elif v.pre_sum is not None and v.pre_sum_sq is not None and not _consistent(v.n, v.pre_sum, v.pre_sum_sq):
        out.append((f"{where}.pre_sum_sq", "inconsistent with pre_sum and n (pre_sum_sq * n < pre_sum ** 2)"))
    return out


def _cross_checks(inp: StatsInput) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen_metrics: set[str] = set()
    for i, m in enumerate(inp.metrics):
        where = f"metrics[{i}]"
        if m.name in seen_metrics:
            out.append((f"{where}.name", f"duplicate metric name {m.name!r}"))
        seen_metrics.add(m.name)
        if m.non_inferiority_margin is not None and m.role != "guardrail":
            out.append((f"{where}.non_inferiority_margin", "only guardrail metrics take a margin"))
        names = [v.name for v in m.variants]
        if inp.control not in names:
            out.append(("control", f"unknown control {inp.control!r}: not a variant of {where} ({names})"))
        for j, v in enumerate(m.variants):
            if names.index(v.name) != j:
                out.append((f"{where}.variants[{j}].name", f"duplicate variant {v.name!r}"))
            out += _check_variant(m, v, f"{where}.variants[{j}]")
        pre_given = {v.pre_sum is not None for v in m.variants}
        if len(pre_given) > 1:
            out.append((f"{where}.variants", "pre_* (CUPED) fields must be given for every variant or none"))
    srm_names = set(inp.exposed) if inp.exposed is not None else {v.name for v in inp.metrics[0].variants}
    if inp.exposed is not None:
        out += [(f"exposed.{k}", "must be >= 0") for k, c in inp.exposed.items() if c < 0]
        if inp.control not in inp.exposed:
            out.append(("exposed", f"no count for the control {inp.control!r}"))
    if inp.expected_weights is not None:
        w = inp.expected_weights
        out += [(f"expected_weights.{k}", "must be > 0") for k, x in w.items() if x <= 0]
        out += [("expected_weights", f"no weight for variant {k!r}") for k in sorted(srm_names - set(w))]
        out += [(f"expected_weights.{k}", "not a variant of the SRM counts") for k in sorted(set(w) - srm_names)]
    out += _check_sequential(inp.sequential)
    if inp.engine == "bayesian" and inp.sequential is not None:
        out.append(("sequential", "not available with engine 'bayesian' (its posterior needs no sequential "
                                  "correction); remove 'sequential' or use engine 'frequentist'"))
    if inp.deterioration_alpha is not None and inp.decision_rule != "risk_aware":
        out.append(("deterioration_alpha", "only for decision_rule 'risk_aware'"))
    health = inp.health
    if health is not None and health.late_records is not None and health.records is None:
        out.append(("health.records", "required when health.late_records is given"))
    if health is not None and health.late_records is not None and health.records is not None \
            and health.late_records > health.records:
        out.append(("health.late_records", f"must be <= health.records (= {health.records})"))
    return out


def _check_sequential(seq: SequentialInput | None) -> list[tuple[str, str]]:
    if seq is None:
        return []
    if seq.method == "always_valid":
        return [
            (f"sequential.{f}", "only for method 'group_sequential'")
            for f in ("information_fraction", "looks", "spending", "rho")
            if getattr(seq, f) is not None
        ]
    out: list[tuple[str, str]] = []
    if seq.rho is not None and seq.spending != "power":
        out.append(("sequential.rho", "only with \"spending\": \"power\""))
    if seq.tuning_n is not None:
        out.append(("sequential.tuning_n", "only for method 'always_valid'"))
    if seq.information_fraction is None:
        return out + [("sequential.information_fraction", "required for method 'group_sequential'")]
    looks = seq.looks or []
    for k, x in enumerate(looks):
        if not 0 < x <= seq.information_fraction:
            out.append((f"sequential.looks[{k}]", f"must be in (0, information_fraction={seq.information_fraction}]"))
    if any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
        out.append(("sequential.looks", "must be strictly increasing"))
    return out
