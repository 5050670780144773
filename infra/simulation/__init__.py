"""The workload simulator with ground truth (``tandem simulate``).

``model`` is the pure user model (tastes, sessions, skips, a return model driven by the
discovery a user experienced); ``truth`` computes every metric's true value per variant
from it; ``offline`` runs it in process against real policy objects (tuning, tests);
``driver`` runs it against the live stack: serving over HTTP, events through
``EventPublisher``, on a compressed event-time clock.
"""

from infra.simulation.driver import SimulationResult, run_simulation, simulate
from infra.simulation.model import (
    DAY_MS,
    GENRES,
    HOUR_MS,
    ORIGIN_MS,
    Expected,
    ModelParams,
    Slot,
    User,
    make_user,
    make_users,
    session,
)
from infra.simulation.offline import (
    REWARD_WINDOW_MS,
    LearningCurve,
    OfflineResult,
    credit_rewards,
    load_demo_spec,
    run_offline,
)
from infra.simulation.truth import compute_truth, user_values, write_truth

__all__ = [
    "DAY_MS",
    "GENRES",
    "HOUR_MS",
    "ORIGIN_MS",
    "REWARD_WINDOW_MS",
    "Expected",
    "LearningCurve",
    "ModelParams",
    "OfflineResult",
    "SimulationResult",
    "Slot",
    "User",
    "compute_truth",
    "credit_rewards",
    "load_demo_spec",
    "make_user",
    "make_users",
    "run_offline",
    "run_simulation",
    "session",
    "simulate",
    "user_values",
    "write_truth",
]
