"""Off-policy estimates against values computed exactly from a synthetic environment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from experiments.ope.errors import InvalidLog, InvalidTarget
from experiments.ope.estimators import (
    LoggedDecision,
    doubly_robust,
    evaluate,
    from_decisions,
    ips,
    reward_model_predictions,
    snips,
)
from streams.events import Decision

ARMS = ("a0", "a1", "a2")


class Environment:
    """A finite set of contexts, drawn uniformly; Bernoulli rewards, linear in the context."""

    def __init__(self, seed: int = 0, n_contexts: int = 25, dim: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n_contexts, dim))
        self.contexts = [{f"f{j}": float(v) for j, v in enumerate(row)} for row in self.x]
        self.theta = rng.normal(size=(len(ARMS), dim))
        self.phi = rng.normal(size=(len(ARMS), dim))
        self.means = np.clip(0.5 + 0.25 * self.x @ self.theta.T, 0.05, 0.95)  # (context, arm)

    def _index(self, context):
        return next(i for i, c in enumerate(self.contexts) if c is context or c == context)

    def logging(self, context, arms):
        scores = self.x[self._index(context)] @ self.phi.T
        soft = np.exp(scores - scores.max())
        probs = 0.7 * soft / soft.sum() + 0.3 / len(arms)
        return dict(zip(arms, probs.tolist(), strict=True))

    def target(self, context, arms):
        """Epsilon-greedy (0.2) on the true means: close to the best policy, far from logging."""
        best = int(np.argmax(self.means[self._index(context)]))
        return {arm: 0.8 * (k == best) + 0.2 / len(arms) for k, arm in enumerate(arms)}

    def true_value(self, policy) -> float:
        return float(np.mean([
            sum(p * self.means[i, k] for k, p in enumerate(policy(c, ARMS).values()))
            for i, c in enumerate(self.contexts)
        ]))

    def log(self, n: int, seed: int) -> list[LoggedDecision]:
        rng = np.random.default_rng(seed)
        rows = []
        for i in rng.integers(0, len(self.contexts), size=n):
            context = self.contexts[i]
            probs = self.logging(context, ARMS)
            k = int(rng.choice(len(ARMS), p=list(probs.values())))
            reward = float(rng.random() < self.means[i, k])
            rows.append(LoggedDecision(context, ARMS, ARMS[k], probs[ARMS[k]], reward))
        return rows


@pytest.fixture(scope="module")
def env():
    return Environment(seed=0)


def test_estimates_on_a_large_log_cover_the_exact_value(env):
    truth = env.true_value(env.target)
    assert abs(truth - env.true_value(env.logging)) > 0.05  # the question is not trivial
    estimates = evaluate(env.log(5000, seed=1), env.target, bootstrap=200, seed=3)
    for method, est in estimates.items():
        assert est.covers(truth), (method, est, truth)
        assert est.bootstrap_low <= truth <= est.bootstrap_high, (method, est, truth)
        assert est.std_error < 0.03
        assert 0 < est.ess < est.n and est.max_weight >= 1.0
    assert estimates["dr"].std_error < estimates["ips"].std_error


def test_95_percent_intervals_cover_the_truth_95_percent_of_the_time(env):
    truth = env.true_value(env.target)
    reps = 50
    hits = {"ips": 0, "snips": 0, "dr": 0}
    for rep in range(reps):
        for method, est in evaluate(env.log(800, seed=100 + rep), env.target, seed=rep).items():
            hits[method] += est.covers(truth)
    for method, k in hits.items():
        # consistent with 95%: a two-sided binomial test does not reject at 1%
        assert stats.binomtest(k, reps, 0.95).pvalue > 0.01, (method, k)


def test_evaluating_the_logging_policy_itself_gives_unit_weights(env):
    log = env.log(500, seed=2)
    est = ips(log, env.logging)
    mean_reward = float(np.mean([row.reward for row in log]))
    assert est.value == pytest.approx(mean_reward)
    assert snips(log, env.logging).value == pytest.approx(mean_reward)
    assert est.ess == pytest.approx(500) and est.max_weight == pytest.approx(1.0)


def test_closed_forms_on_a_tiny_log():
    log = [
        LoggedDecision({"x": 0.0}, ("a", "b"), "a", 0.8, 1.0),
        LoggedDecision({"x": 1.0}, ("a", "b"), "b", 0.2, 3.0),
        LoggedDecision({"x": 2.0}, ("a", "b"), "a", 0.5, 0.0),
    ]

    def target(context, arms):
        return {"a": 0.5, "b": 0.5}

    w = np.array([0.5 / 0.8, 0.5 / 0.2, 0.5 / 0.5])
    r = np.array([1.0, 3.0, 0.0])
    assert ips(log, target).value == pytest.approx(float(np.mean(w * r)))
    assert ips(log, target).std_error == pytest.approx(float(np.std(w * r, ddof=1) / math.sqrt(3)))
    assert snips(log, target).value == pytest.approx(float((w * r).sum() / w.sum()))
    assert ips(log, target).ess == pytest.approx(float(w.sum() ** 2 / (w @ w)))
    # with one fold the reward model is fitted on the whole log: rows of arm a are (0, 1), (2, 0)
    q = reward_model_predictions(log, l2=1e-9, folds=1)
    assert q[0]["a"] == pytest.approx(1.0, abs=1e-6) and q[2]["a"] == pytest.approx(0.0, abs=1e-6)
    assert q[1]["b"] == pytest.approx(3.0, abs=1e-6)
    dr = doubly_robust(log, target, l2=1e-9, folds=1)
    direct = [0.5 * q[i]["a"] + 0.5 * q[i]["b"] for i in range(3)]
    assert dr.value == pytest.approx(float(np.mean(direct)), abs=1e-6)  # residuals are zero


def test_a_policy_from_streams_can_be_the_candidate(env):
    from streams.policies import make_policy

    policy = make_policy("linucb", seed=5, alpha=0.5)
    for row in env.log(300, seed=4):
        policy.update(row.context, row.arm, row.reward)
    truth = env.true_value(policy.probabilities)
    assert evaluate(env.log(4000, seed=6), policy.probabilities)["dr"].covers(truth)


def test_from_decisions_and_bad_inputs():
    decision = Decision(
        decision_id="d1", user_id="u1", ts=1_767_225_600_000, policy="softmax", policy_version=2,
        arm="jazz", propensity=0.25, arms=["jazz", "rock"], context={"x": 1.0},
    )
    log = from_decisions([(decision, 2.0)])
    assert log == [LoggedDecision({"x": 1.0}, ("jazz", "rock"), "jazz", 0.25, 2.0)]
    assert ips(log, lambda c, arms: {"jazz": 1.0, "rock": 0.0}).value == pytest.approx(8.0)
    with pytest.raises(InvalidTarget, match="sum to 1"):
        ips(log, lambda c, arms: {"jazz": 0.7})
    with pytest.raises(InvalidLog, match="no logged decisions"):
        snips([], lambda c, arms: {})
    with pytest.raises(InvalidLog, match="propensity"):
        ips([LoggedDecision({}, ("a",), "a", 0.0, 1.0)], lambda c, arms: {"a": 1.0})
