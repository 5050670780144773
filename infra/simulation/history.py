"""Past experiments in the simulator: the archive the surrogate of day-7 or day-28 retention is learned from.

Each past experiment is the demo's ranker experiment with other policies in its two variants,
run by the in-process simulator (``infra.simulation.offline``) on its own users and seed, with
its events kept. The users' first exposures and events go through ``OutcomeJoin`` exactly as
``tandem experiments surrogate`` reads them from the topics, so the rows are the ones an archive
would give. ``python -m infra.simulation.history [--outcome d7|d28|both]`` prints the fitted
surrogate and its held-out validity (the effect through the surrogate against the realized effect,
per experiment) for each outcome.

The outcomes (``OUTCOME_DELAYS_MS``): any event in ``[k d, (k + 1) d)`` after the first exposure,
day 7 by default. Day 28 needs a run of 30 days after exposure (``ModelParams.covering``) instead of
the default 9, and an attribution window of 29 days: its interval ends 29 days after the exposure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from experiments.spec import ExperimentSpec
from experiments.surrogate import (
    DEFAULT_ATTRIBUTION_WINDOW_MS,
    OutcomeJoin,
    Surrogate,
    SurrogateRow,
    Validity,
    fit_surrogate,
    validate,
)
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


#: The long-term outcomes the archive can give: retention on day ``k``, the outcome interval's delay.
OUTCOME_DELAYS_MS: dict[str, int] = {"d7": 7 * DAY_MS, "d28": 28 * DAY_MS}
OUTCOME_LENGTH_MS = DAY_MS


def outcome_join(outcome: str, *, signal_horizon_ms: int = DAY_MS) -> OutcomeJoin:
    """The join of one outcome; the attribution window stretched when the interval ends after the default's."""
    delay = OUTCOME_DELAYS_MS[outcome]
    return OutcomeJoin(signal_horizon_ms=signal_horizon_ms, outcome_delay_ms=delay, outcome_length_ms=OUTCOME_LENGTH_MS,
                       attribution_window_ms=max(DEFAULT_ATTRIBUTION_WINDOW_MS, delay + OUTCOME_LENGTH_MS))


def archive(*, users: int = 1000, seed: int = 100, params: ModelParams = ModelParams(),  # noqa: B008 - frozen
            signal_horizon_ms: int = DAY_MS, outcomes: Sequence[str] = ("d7",)) -> dict[str, list[SurrogateRow]]:
    """The rows of every past experiment per outcome, each experiment run once (long enough for the latest
    outcome) on its own users (seed + its index), with signals read over ``signal_horizon_ms`` after the
    first exposure."""
    run_params = params.covering(max(OUTCOME_DELAYS_MS[o] for o in outcomes) + OUTCOME_LENGTH_MS)
    rows: dict[str, list[SurrogateRow]] = {outcome: [] for outcome in outcomes}
    for k, (experiment, control, treatment) in enumerate(PAST):
        spec = past_spec(experiment, control, treatment)
        result = run_offline(users=users, seed=seed + k, specs=[spec], params=run_params, keep_events=True)
        for outcome in outcomes:
            join = outcome_join(outcome, signal_horizon_ms=signal_horizon_ms)
            for person in result.people:
                first = person.first_exposures.get(experiment)
                if first is not None:
                    join.add_exposure(f"{experiment}/{person.user_id}", experiment, first[1], person.user_id, first[0])
            for event in result.events:
                join.add_event(event)
            rows[outcome].extend(join.rows(watermark=run_params.horizon_ms()))
    return rows


def archive_rows(*, users: int = 1000, seed: int = 100, params: ModelParams = ModelParams(),  # noqa: B008 - frozen
                 signal_horizon_ms: int = DAY_MS, outcome: str = "d7") -> list[SurrogateRow]:
    """The rows of one outcome (``archive``)."""
    return archive(users=users, seed=seed, params=params, signal_horizon_ms=signal_horizon_ms,
                   outcomes=(outcome,))[outcome]


def fit_and_validate(rows: list[SurrogateRow], outcome: str = "d7") -> tuple[Surrogate, Validity]:
    return (fit_surrogate(rows, outcome=f"retention_{outcome}"),  # the specs' metric names: retention_d7
            validate(rows, controls={e: "control" for e, _, _ in PAST}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--signal-days", type=float, default=1.0, help="days of short-term signals (default 1)")
    parser.add_argument("--outcome", choices=[*OUTCOME_DELAYS_MS, "both"], default="d7",
                        help="day-7 or day-28 retention, or both from the same runs (default d7)")
    args = parser.parse_args(argv)
    outcomes = list(OUTCOME_DELAYS_MS) if args.outcome == "both" else [args.outcome]
    rows = archive(users=args.users, seed=args.seed, signal_horizon_ms=int(args.signal_days * DAY_MS),
                   outcomes=outcomes)
    report = {}
    for outcome in outcomes:
        model, validity = fit_and_validate(rows[outcome], outcome)
        report[outcome] = {"surrogate": model.to_state(), "agreement": validity.agreement,
                           "sign_agreement": validity.sign_agreement,
                           "validity": [dataclasses.asdict(row) for row in validity.rows]}
    # One outcome prints as before; both print keyed by outcome.
    print(json.dumps(report[outcomes[0]] if len(outcomes) == 1 else report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
