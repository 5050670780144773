"""The recommender with an in-memory feature reader: assignment, policies, propensities, records."""

from __future__ import annotations

import json
import random

import pytest

from experiments.assignment import assign, assign_all
from experiments.spec import parse_spec, spec_to_json
from streams.events import ModelSnapshot, encode
from streams.features import default_features
from streams.policies import make_policy
from streams.serving import DEFAULT_ARMS, LiveConfig, Recommender
from streams.serving.errors import InvalidRequest
from tests.helpers import T0_MS

DAY_MS = 86_400_000


class InMemoryFeatures:
    """A feature reader: known users' rows, defaults for everyone else (as the Feast client does)."""

    def __init__(self, rows: dict[str, dict[str, int | float]] | None = None) -> None:
        self.defaults = default_features()
        self.rows = rows or {}

    def read(self, user_ids: list[str]) -> dict[str, dict[str, int | float]]:
        return {user: {**self.defaults, **self.rows.get(user, {})} for user in user_ids}


def spec_dict(**changes: object) -> dict:
    spec = {
        "id": "discovery", "salt": "discovery/1", "start": T0_MS, "end": T0_MS + 30 * DAY_MS,
        "control": "control",
        "variants": [{"name": "control", "weight": 0.5, "policy": "popularity"},
                     {"name": "treatment", "weight": 0.5, "policy": "linucb"}],
        "layer": {"name": "recs", "holdout": 0.1},
        "metrics": [{"name": "plays", "role": "success", "kind": "mean", "direction": "increase",
                     "measure": "plays", "window": {"length": "7d"}}],
    }
    spec.update(changes)
    return spec


def snapshot(policy_name: str, policy: object, version: int = 1) -> bytes:
    state = policy.to_state()  # type: ignore[attr-defined]
    return encode(ModelSnapshot(snapshot_id=f"s{version}", policy=policy_name, version=version, ts=T0_MS,
                                updates=version, state=state))


def live_with(*specs: dict) -> LiveConfig:
    live = LiveConfig()
    for spec in specs:
        live.apply_spec(spec["id"].encode(), spec_to_json(parse_spec(spec)))
    return live


def trained_linucb(seed: int = 1) -> object:
    policy = make_policy("linucb", seed=seed, epsilon=0.1)
    rng = random.Random(seed)
    for _ in range(200):
        context = {"plays_1h": float(rng.randint(0, 5)), "skip_rate_1h": rng.random()}
        arm = rng.choice(DEFAULT_ARMS)
        policy.update(context, arm, 1.0 if arm == "jazz" and context["plays_1h"] > 2 else 0.0)
    return policy


def test_cold_start_users_get_the_default_features_and_policy() -> None:
    features = InMemoryFeatures()
    rec = Recommender(live=LiveConfig(), arms=DEFAULT_ARMS)
    out = rec.recommend("nobody", features=features.read(["nobody"])["nobody"], ts_ms=T0_MS)
    decision = out.decision
    assert decision.context == {k: float(v) for k, v in features.defaults.items()}
    assert (decision.policy, decision.policy_version, decision.assignments) == ("popularity", 0, {})
    assert decision.arms == list(DEFAULT_ARMS) and decision.arm in DEFAULT_ARMS
    assert decision.propensity == pytest.approx(1 / len(DEFAULT_ARMS))  # no data: ties share
    assert out.exposures == () and out.variant is None
    assert out.response()["version"] == 0 and out.response()["decision_id"] == decision.decision_id


def test_users_get_their_variants_policy_and_one_exposure() -> None:
    spec = parse_spec(spec_dict())
    rec = Recommender(live=live_with(spec_dict()), arms=DEFAULT_ARMS)
    seen = set()
    for i in range(300):
        user = f"u{i}"
        out = rec.recommend(user, features=default_features(), ts_ms=T0_MS + DAY_MS)
        variant = assign(spec, user, at_ms=T0_MS + DAY_MS)
        assert out.decision.assignments == assign_all([spec], user, at_ms=T0_MS + DAY_MS)
        if variant is None:  # holdout: the default policy and no exposure
            assert out.decision.policy == "popularity" and out.exposures == ()
            seen.add("holdout")
            continue
        seen.add(variant)
        assert out.decision.policy == spec.variant(variant).policy
        (exposure,) = out.exposures
        assert (exposure.experiment, exposure.variant, exposure.user_id, exposure.ts) == (
            "discovery", variant, user, T0_MS + DAY_MS)
        assert exposure.exposure_id == f"{out.decision.decision_id}:discovery"
    assert seen == {"holdout", "control", "treatment"}


def test_a_variant_serves_its_policy_built_with_its_policy_params() -> None:
    variants = [{"name": "control", "weight": 0.5, "policy": "popularity", "policy_params": {"epsilon": 0.6}},
                {"name": "treatment", "weight": 0.5, "policy": "linucb"}]
    spec = parse_spec(spec_dict(variants=variants))
    live = live_with(spec_dict(variants=variants))
    rec = Recommender(live=live, arms=DEFAULT_ARMS)
    user = next(f"u{i}" for i in range(100) if assign(spec, f"u{i}", at_ms=T0_MS + DAY_MS) == "control")
    out = rec.recommend(user, features=default_features(), ts_ms=T0_MS + DAY_MS)
    assert out.decision.policy == "popularity"
    # With no data every arm ties: epsilon 0.6 or 0.05 alike give uniform; so ask the policies themselves.
    assert live.policy("popularity", {"epsilon": 0.6}).epsilon == 0.6
    assert live.policy("popularity").epsilon == 0.05  # the holdout's default is another object
    assert live.policy("popularity", {"epsilon": 0.6}) is not live.policy("popularity")


def test_experiments_apply_only_between_start_and_end_in_event_time() -> None:
    rec = Recommender(live=live_with(spec_dict()), arms=DEFAULT_ARMS)
    for ts in (T0_MS - 1, T0_MS + 30 * DAY_MS):
        out = rec.recommend("u1", features={}, ts_ms=ts)
        assert out.decision.assignments == {} and out.decision.ts == ts


def test_the_logged_propensity_is_the_policys_probability() -> None:
    policy = trained_linucb()
    live = live_with(spec_dict(variants=[{"name": "control", "weight": 0.01, "policy": "popularity"},
                                         {"name": "treatment", "weight": 0.99, "policy": "linucb"}],
                               layer=None))
    live.apply_snapshot(b"linucb", snapshot("linucb", policy, version=200))
    rec = Recommender(live=live, arms=DEFAULT_ARMS)
    rng = random.Random(5)
    checked = 0
    for i in range(200):
        features = {**default_features(), "plays_1h": rng.randint(0, 5), "skip_rate_1h": rng.random()}
        out = rec.recommend(f"user-{i}", features=features, ts_ms=T0_MS + DAY_MS)
        decision = out.decision
        if decision.policy != "linucb":
            continue
        checked += 1
        assert decision.policy_version == 200
        expected = policy.probabilities(decision.context, decision.arms)  # type: ignore[attr-defined]
        assert decision.propensity == pytest.approx(expected[decision.arm], abs=1e-12)
    assert checked > 150


def test_candidates_replace_the_default_arms() -> None:
    rec = Recommender(live=LiveConfig(), arms=DEFAULT_ARMS)
    out = rec.recommend("u1", features={}, ts_ms=T0_MS, candidates=["a", "b", "c"])
    assert out.decision.arms == ["a", "b", "c"] and out.decision.propensity == pytest.approx(1 / 3)


def test_a_variant_whose_policy_cannot_be_served_gets_the_default_and_no_exposure() -> None:
    live = live_with(spec_dict(layer=None, variants=[{"name": "control", "weight": 0.5, "policy": "mystery"},
                                                     {"name": "treatment", "weight": 0.5, "policy": "mystery"}]))
    rec = Recommender(live=live, arms=DEFAULT_ARMS)
    out = rec.recommend("u1", features={}, ts_ms=T0_MS + DAY_MS)
    assert out.decision.policy == "popularity" and out.exposures == () and out.decision.assignments
    assert rec.unresolved["mystery"] == 1


def test_a_version_with_a_batch_only_metric_is_loaded_and_serves_as_before() -> None:
    base = spec_dict()
    batch_metric = {"name": "likes_7d", "role": "success", "kind": "mean", "direction": "increase",
                    "measure": "likes", "window": {"length": "7d"}, "source": "batch"}
    live = live_with(base)
    before = Recommender(live=live, arms=DEFAULT_ARMS).recommend("u7", features={}, ts_ms=T0_MS + DAY_MS)
    live.apply_spec(b"discovery", spec_to_json(parse_spec({**base, "metrics": [*base["metrics"], batch_metric]})))
    assert live.reload_errors["experiments"] == 0 and live.specs()[0].batch_metrics[0].name == "likes_7d"
    after = Recommender(live=live, arms=DEFAULT_ARMS).recommend("u7", features={}, ts_ms=T0_MS + DAY_MS)
    exposed = [[(x.experiment, x.variant) for x in out.exposures] for out in (before, after)]
    assert after.decision.assignments == before.decision.assignments and exposed[0] == exposed[1] != []


def test_live_config_applies_the_newest_record_per_key_and_counts_bad_ones() -> None:
    live = live_with(spec_dict())
    live.apply_spec(b"discovery", spec_to_json(parse_spec(spec_dict(description="second"))))
    assert [s.description for s in live.specs()] == ["second"]
    live.apply_spec(b"discovery", b"{not json")
    live.apply_spec(b"other", spec_to_json(parse_spec(spec_dict())))  # key is not the id
    assert live.reload_errors["experiments"] == 2 and live.specs()[0].description == "second"
    live.apply_spec(b"discovery", None)  # tombstone
    assert live.specs() == () and live.reloads["experiments"] == 3

    live.apply_snapshot(b"linucb", snapshot("linucb", trained_linucb(), version=200))
    assert live.versions()["linucb"] == 200
    live.apply_snapshot(b"linucb", b'{"snapshot_id": "x"}')
    bad_state = json.loads(snapshot("linucb", trained_linucb()))
    bad_state["state"]["policy"] = "nope"
    live.apply_snapshot(b"linucb", json.dumps(bad_state).encode())
    live.apply_snapshot(b"softmax", snapshot("linucb", trained_linucb()))  # key is not the policy
    assert live.reload_errors["models"] == 3 and live.versions()["linucb"] == 200
    live.apply_snapshot(b"linucb", None)
    assert "linucb" not in live.versions()


def test_an_unknown_default_policy_fails_at_construction() -> None:
    with pytest.raises(KeyError, match="nope"):
        Recommender(live=LiveConfig(), arms=DEFAULT_ARMS, default_policy="nope")


# ---- concurrent experiments: composed parameters, exposure at the point of use -----------------

def param_spec(id: str, variants: list[dict], **changes: object) -> dict:
    return spec_dict(id=id, salt=f"{id}/1", variants=variants, **changes)


RANKING = param_spec("ranking", [{"name": "control", "weight": 0.5, "policy": "popularity"},
                                 {"name": "treatment", "weight": 0.5, "policy": "linucb"}],
                     layer={"name": "ranking"})
LAYOUT = param_spec("layout", [{"name": "control", "weight": 0.5, "params": {"num_items": 3}},
                               {"name": "treatment", "weight": 0.5, "params": {"num_items": 1}}],
                    layer={"name": "layout"})
HOLDOUT = param_spec("holdout", [{"name": "control", "weight": 0.1}, {"name": "treatment", "weight": 0.9}],
                     kind="holdout", layer=None)


def test_each_experiment_whose_parameter_shaped_the_response_is_exposed_once() -> None:
    rec = Recommender(live=live_with(RANKING, LAYOUT, HOLDOUT), arms=DEFAULT_ARMS)
    held = 0
    for i in range(400):
        out = rec.recommend(f"u{i}", features=default_features(), ts_ms=T0_MS + DAY_MS)
        exposures = {e.experiment: e for e in out.exposures}
        assert {e.exposure_id for e in out.exposures} == {f"{out.decision.decision_id}:{x}" for x in exposures}
        assert all(e.surface == "home" and e.user_id == f"u{i}" for e in out.exposures)
        if exposures["holdout"].variant == "control":  # held out: defaults, only the holdout exposed
            held += 1
            assert set(exposures) == {"holdout"} and exposures["holdout"].params == []
            assert out.params["num_items"] == 3 and out.decision.policy == "popularity"
            continue
        assert set(exposures) == {"holdout", "ranking", "layout"}
        assert exposures["ranking"].params == ["ranker"] and exposures["layout"].params == ["num_items"]
        assert out.params["num_items"] == (1 if exposures["layout"].variant == "treatment" else 3)
        assert out.decision.policy == ("linucb" if exposures["ranking"].variant == "treatment" else "popularity")
        assert out.response()["exposed"] == {k: e.variant for k, e in exposures.items()}
    assert 0 < held < 100


def test_another_surface_exposes_none_of_the_home_experiments() -> None:
    rec = Recommender(live=live_with(RANKING, LAYOUT, HOLDOUT), arms=DEFAULT_ARMS)
    out = rec.recommend("u1", features={}, ts_ms=T0_MS + DAY_MS, surface="search")
    assert out.exposures == () and out.surface == "search" and out.decision.assignments == {}
    with pytest.raises(InvalidRequest, match="surface: unknown surface 'basement'"):
        rec.recommend("u1", features={}, ts_ms=T0_MS + DAY_MS, surface="basement")


def test_a_spec_record_with_an_unknown_parameter_is_dead_lettered_and_the_last_good_version_stays() -> None:
    letters = []
    live = LiveConfig(on_rejected=letters.append)
    live.apply_spec(b"layout", spec_to_json(parse_spec(LAYOUT)), topic="t.experiments", partition=0, offset=7)
    bad = parse_spec(param_spec("layout", [{"name": "control", "weight": 0.5, "params": {"colour": "red"}},
                                           {"name": "treatment", "weight": 0.5}], description="bad"))
    live.apply_spec(b"layout", spec_to_json(bad), topic="t.experiments", partition=0, offset=8)
    assert [s.description for s in live.specs()] == [""] and live.reload_errors["experiments"] == 1
    (letter,) = letters
    assert (letter.source_topic, letter.offset, letter.stage) == ("t.experiments", 8, "serving.live_config")
    assert "variants[0].params.colour: not a parameter of surface 'home'" in letter.error


def test_only_running_experiments_are_assigned_and_a_stopped_one_serves_its_control() -> None:
    treated = next(f"u{i}" for i in range(1000) if assign(parse_spec(spec_dict(layer=None)), f"u{i}") == "treatment")
    at = T0_MS + DAY_MS
    for status, policy, exposed in (("running", "linucb", True), ("stopped", "popularity", False),
                                    ("decided", "popularity", False), ("draft", "popularity", False)):
        live = live_with(spec_dict(layer=None, status=status))
        rec = Recommender(live=live, arms=DEFAULT_ARMS, default_policy="uniform")
        out = rec.recommend(treated, features={}, ts_ms=at)
        # a draft was never served: the surface's default ranker (popularity, as the control here)
        assert out.decision.policy == policy, status
        assert bool(out.exposures) is exposed and bool(out.decision.assignments) is exposed, status
        assert (out.experiment is not None) is exposed, status
