"""The workload simulator with ground truth (``tandem simulate``).

``model`` is the pure user model (tastes, sessions, skips, a return model driven by the
discovery a user experienced); ``truth`` computes every metric's true value per variant
from it; ``offline`` runs it in process against real policy objects (tuning, tests);
``driver`` runs it against the live stack: serving over HTTP, events through
``EventPublisher``, on a compressed event-time clock.
"""

from infra.simulation.driver import SimulationResult, run_simulation, simulate
from infra.simulation.model import GENRES, ORIGIN_MS, ModelParams, User, make_users, session
from infra.simulation.offline import OfflineResult, load_demo_spec, run_offline
from infra.simulation.truth import compute_truth, write_truth

__all__ = [
    "GENRES",
    "ORIGIN_MS",
    "ModelParams",
    "OfflineResult",
    "SimulationResult",
    "User",
    "compute_truth",
    "load_demo_spec",
    "make_users",
    "run_offline",
    "run_simulation",
    "session",
    "simulate",
    "write_truth",
]
