"""Off-policy evaluation: a candidate policy's value from decisions another policy logged.

Each logged decision holds the context, the candidate arms, the arm chosen, the
probability the logging policy gave it (``propensity``, logged at decision time) and
the reward observed. The candidate is any callable ``probabilities(context, arms) ->
{arm: p}``, so this module needs no policy code (``Policy.probabilities`` fits).

With importance weights ``w = π(arm | x) / propensity``:

- **IPS**: ``mean(w·r)``; unbiased when every arm the candidate may choose had a
  positive logging probability.
- **SNIPS** (self-normalized): ``Σ w·r / Σ w``; slightly biased, much less variable;
  its standard error comes from the delta method.
- **DR** (doubly robust): ``mean(Σ_a π(a|x)·q(x, a) + w·(r − q(x, arm)))`` with ``q`` a
  per-arm ridge regression of reward on the context, **cross-fitted**: the log is split
  into ``folds`` parts (a seeded shuffle) and each part's ``q`` is fitted on the others,
  so the reward model never scores the rows it was fitted on. Arms without training
  rows in a fold are predicted by that fold's mean reward.

Confidence intervals use the normal approximation from the per-row terms (their
standard deviation over ``sqrt(n)``); with ``bootstrap=B`` a percentile bootstrap over
rows of those same terms is reported too (DR's reward model is not refitted). Each
estimate carries the effective sample size ``(Σw)² / Σw²`` and the largest weight:
a small ESS or a huge weight means the candidate strays far from the logging policy
and the interval is not to be trusted whatever its width.

>>> log = [LoggedDecision({"x": 1.0}, ("a", "b"), "a", 0.5, 1.0),
...        LoggedDecision({"x": 1.0}, ("a", "b"), "b", 0.5, 0.0)]
>>> always_a = lambda context, arms: {arm: float(arm == "a") for arm in arms}
>>> round(ips(log, always_a).value, 6), round(snips(log, always_a).value, 6)
(1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from experiments.ope.errors import InvalidLog, InvalidTarget
from streams.events import Decision

TargetPolicy = Callable[[Mapping[str, float], Sequence[str]], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    context: Mapping[str, float]
    arms: tuple[str, ...]
    arm: str
    propensity: float
    reward: float


@dataclass(frozen=True, slots=True)
class Estimate:
    method: str
    value: float
    std_error: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    ess: float
    max_weight: float
    bootstrap_low: float | None = None
    bootstrap_high: float | None = None

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def from_decisions(pairs: Iterable[tuple[Decision, float]]) -> list[LoggedDecision]:
    """Logged decisions from ``(Decision, reward)`` pairs, e.g. the reward joiner's output."""
    return [
        LoggedDecision(dict(d.context), tuple(d.arms), d.arm, d.propensity, float(r)) for d, r in pairs
    ]


class _Prepared:
    """The log as arrays, with the candidate's probabilities computed once."""

    def __init__(self, log: Sequence[LoggedDecision], target: TargetPolicy) -> None:
        if not log:
            raise InvalidLog("log: no logged decisions to evaluate")
        self.log = log
        self.target_probs: list[dict[str, float]] = []
        for i, row in enumerate(log):
            if not 0.0 < row.propensity <= 1.0 or row.arm not in row.arms:
                raise InvalidLog(f"log[{i}]: propensity must be in (0, 1] and arm one of arms")
            if not math.isfinite(row.reward):
                raise InvalidLog(f"log[{i}].reward: {row.reward!r} is not finite")
            chosen = target(row.context, row.arms)
            probs = {arm: float(chosen.get(arm, 0.0)) for arm in row.arms}
            if min(probs.values()) < 0.0 or abs(sum(probs.values()) - 1.0) > 1e-6:
                raise InvalidTarget(f"log[{i}]: candidate probabilities {probs} do not sum to 1 over arms")
            self.target_probs.append(probs)
        self.rewards = np.array([row.reward for row in log])
        self.weights = np.array(
            [p[row.arm] / row.propensity for p, row in zip(self.target_probs, log, strict=True)]
        )


def _estimate(
    method: str, value: float, terms: np.ndarray, prepared: _Prepared, confidence: float,
    bootstrap: int, seed: int, statistic: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Estimate:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: {confidence!r} must be in (0, 1)")
    n = terms.shape[0]
    se = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    w = prepared.weights
    ess = float(w.sum() ** 2 / (w @ w)) if w.any() else 0.0
    low = high = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        chunk = max(1, 4_000_000 // n)  # resample indices a few million at a time
        parts = []
        for start in range(0, bootstrap, chunk):
            idx = rng.integers(0, n, size=(min(chunk, bootstrap - start), n))
            parts.append(statistic(idx) if statistic is not None else terms[idx].mean(axis=1))
        draws = np.concatenate(parts)
        low, high = (float(q) for q in np.quantile(draws, [0.5 - confidence / 2, 0.5 + confidence / 2]))
    return Estimate(
        method, float(value), se, value - z * se, value + z * se, confidence, n, ess, float(w.max()), low, high
    )


def ips(
    log: Sequence[LoggedDecision], target: TargetPolicy, *, confidence: float = 0.95,
    bootstrap: int = 0, seed: int = 0,
) -> Estimate:
    p = _Prepared(log, target)
    terms = p.weights * p.rewards
    return _estimate("ips", float(terms.mean()), terms, p, confidence, bootstrap, seed)


def snips(
    log: Sequence[LoggedDecision], target: TargetPolicy, *, confidence: float = 0.95,
    bootstrap: int = 0, seed: int = 0,
) -> Estimate:
    p = _Prepared(log, target)
    return _snips(p, confidence, bootstrap, seed)


def _snips(p: _Prepared, confidence: float, bootstrap: int, seed: int) -> Estimate:
    w, r = p.weights, p.rewards
    if w.sum() <= 0:
        raise InvalidTarget("snips: the candidate gives probability 0 to every logged choice")
    value = float((w * r).sum() / w.sum())
    terms = w * (r - value) / w.mean() + value  # delta method: same variance, centred on value

    def ratio(idx: np.ndarray) -> np.ndarray:
        ws = w[idx]
        return (ws * r[idx]).sum(axis=1) / np.maximum(ws.sum(axis=1), 1e-300)

    return _estimate("snips", value, terms, p, confidence, bootstrap, seed, ratio)


def _features(log: Sequence[LoggedDecision]) -> list[str]:
    return sorted({name for row in log for name in row.context})


def _design(contexts: Iterable[Mapping[str, float]], features: list[str]) -> np.ndarray:
    rows = [[ctx.get(f, 0.0) for f in features] for ctx in contexts]
    return np.array(rows, dtype=float).reshape(len(rows), len(features))  # no features: an (n, 0) matrix


def _fit_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Ridge with an unpenalized intercept, by centring."""
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    beta = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return beta, float(mean_y - mean_x @ beta)


def reward_model_predictions(
    log: Sequence[LoggedDecision], *, l2: float = 1.0, folds: int = 2, seed: int = 0
) -> list[dict[str, float]]:
    """Cross-fitted per-arm ridge predictions ``q(x_i, a)`` for every row and candidate arm."""
    n = len(log)
    folds = max(1, min(folds, n))
    features = _features(log)
    x = _design((row.context for row in log), features)
    arms_chosen = np.array([row.arm for row in log], dtype=object)
    rewards = np.array([row.reward for row in log])
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    preds: list[dict[str, float]] = [{} for _ in range(n)]
    for k in range(folds):
        test = np.flatnonzero(fold_of == k)
        train = np.flatnonzero(fold_of != k) if folds > 1 else test
        fallback = float(rewards[train].mean()) if train.size else 0.0
        models: dict[str, tuple[np.ndarray, float] | None] = {}
        for i in test.tolist():
            for arm in log[i].arms:
                if arm not in models:
                    rows = train[arms_chosen[train] == arm]
                    models[arm] = _fit_ridge(x[rows], rewards[rows], l2) if rows.size else None
                model = models[arm]
                preds[i][arm] = fallback if model is None else float(x[i] @ model[0] + model[1])
    return preds


def doubly_robust(
    log: Sequence[LoggedDecision], target: TargetPolicy, *, confidence: float = 0.95,
    l2: float = 1.0, folds: int = 2, bootstrap: int = 0, seed: int = 0,
) -> Estimate:
    p = _Prepared(log, target)
    return _doubly_robust(p, confidence, l2, folds, bootstrap, seed)


def _doubly_robust(p: _Prepared, confidence: float, l2: float, folds: int, bootstrap: int, seed: int) -> Estimate:
    q = reward_model_predictions(p.log, l2=l2, folds=folds, seed=seed)
    direct = np.array([sum(pi[a] * qi[a] for a in pi) for pi, qi in zip(p.target_probs, q, strict=True)])
    q_logged = np.array([qi[row.arm] for qi, row in zip(q, p.log, strict=True)])
    terms = direct + p.weights * (p.rewards - q_logged)
    return _estimate("dr", float(terms.mean()), terms, p, confidence, bootstrap, seed)


def evaluate(
    log: Sequence[LoggedDecision], target: TargetPolicy, *, confidence: float = 0.95,
    l2: float = 1.0, folds: int = 2, bootstrap: int = 0, seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR estimates of ``target``'s value, calling ``target`` once per row."""
    p = _Prepared(log, target)
    terms = p.weights * p.rewards
    return {
        "ips": _estimate("ips", float(terms.mean()), terms, p, confidence, bootstrap, seed),
        "snips": _snips(p, confidence, bootstrap, seed),
        "dr": _doubly_robust(p, confidence, l2, folds, bootstrap, seed),
    }
