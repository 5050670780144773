"""Past experiments in the simulator: the archive the surrogate of day-7 retention is learned from.

Each past experiment is the demo's ranker experiment with other policies in its two variants,
run by the in-process simulator (``infra.simulation.offline``) on its own users and seed, with
its events kept. The users' first exposures and events go through ``OutcomeJoin`` exactly as
``tandem experiments surrogate`` reads them from the topics, so the rows are the ones an archive
would give. ``python -m infra.simulation.history`` prints the fitted surrogate and its held-out
validity (the effect through the surrogate against the realized effect, per experiment).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from experiments.spec import ExperimentSpec
from experiments.surrogate import OutcomeJoin, Surrogate, SurrogateRow, Validity, fit_surrogate, validate
from infra.simulation.model import DAY_MS, ModelParams
from infra.simulation.offline import load_demo_spec, run_offline

#: (experiment, control's policy and params, treatment's policy and params) of the simulated archive.
PAST: tuple[tuple[str, tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]], ...] = (
    ("past_explore_more", ("popularity", {"epsilon": 0.2}), ("popularity", {"epsilon": 0.6})),
    ("past_bandit", ("popularity", {"epsilon": 0.6}), ("linucb", {})),
    ("past_uniform", ("popularity", {"epsilon": 0.2}), ("uniform", {})),
    ("past_greedy", ("popularity", {"epsilon": 0.6}), ("epsilon_greedy", {"epsilon": 0.1})),
    ("past_softmax", ("uniform", {}), ("softmax", {})),
)


def past_spec(experiment: str, control: tuple[str, dict[str, Any]], treatment: tuple[str, dict[str, Any]]
              ) -> ExperimentSpec:
    base = load_demo_spec()
    variants = [
        {"name": "control", "weight": 0.5, "policy": control[0], "policy_params": control[1]},
        {"name": "treatment", "weight": 0.5, "policy": treatment[0], "policy_params": treatment[1]},
    ]
    data = base.model_dump(mode="json", exclude={"variants", "history", "evaluation"})
    return ExperimentSpec.model_validate({**data, "id": experiment, "salt": f"{experiment}/sim", "variants": variants})


def archive_rows(*, users: int = 1000, seed: int = 100, params: ModelParams = ModelParams(),  # noqa: B008 - frozen
                 signal_horizon_ms: int = DAY_MS) -> list[SurrogateRow]:
    """The rows of every past experiment, each run on its own users (seed + its index), with signals
    read over ``signal_horizon_ms`` after the first exposure."""
    rows: list[SurrogateRow] = []
    for k, (experiment, control, treatment) in enumerate(PAST):
        spec = past_spec(experiment, control, treatment)
        result = run_offline(users=users, seed=seed + k, specs=[spec], params=params, keep_events=True)
        join = OutcomeJoin(signal_horizon_ms=signal_horizon_ms)
        for person in result.people:
            first = person.first_exposures.get(experiment)
            if first is not None:
                join.add_exposure(f"{experiment}/{person.user_id}", experiment, first[1], person.user_id, first[0])
        for event in result.events:
            join.add_event(event)
        rows.extend(join.rows(watermark=params.horizon_ms()))
    return rows


def fit_and_validate(rows: list[SurrogateRow]) -> tuple[Surrogate, Validity]:
    return fit_surrogate(rows), validate(rows, controls={e: "control" for e, _, _ in PAST})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--signal-days", type=float, default=1.0, help="days of short-term signals (default 1)")
    args = parser.parse_args(argv)
    model, validity = fit_and_validate(archive_rows(users=args.users, seed=args.seed,
                                                    signal_horizon_ms=int(args.signal_days * DAY_MS)))
    print(json.dumps({"surrogate": model.to_state(), "agreement": validity.agreement,
                      "sign_agreement": validity.sign_agreement,
                      "validity": [dataclasses.asdict(row) for row in validity.rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
