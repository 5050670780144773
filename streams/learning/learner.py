"""The online learner: decisions joined with their rewards update the policy that made them.

Plain Python, no Faust. Records come in with the input partition they were read
from; the watermark is the minimum over those partitions (decisions and events
alike) of the newest event time seen, minus an allowed lateness, so one fast
partition cannot close the reward windows of another. Each closed decision
updates the policy it names (``decision.policy``), once: the joiner is
idempotent on decision_id and event_id. Snapshots of a policy are due every
``snapshot_every_updates`` updates of it or ``snapshot_every_s`` seconds of wall
time since its last one, whichever comes first (wall time here paces publishing,
never windows).

``to_state()`` is everything the learner has learned, as JSON types: every policy (with
its random generator), the joiner's open decisions and buffered events, the newest event
time per input partition and the counters; ``from_state`` rebuilds a learner that goes
on exactly as the original would (``streams.learning.checkpoint`` stores it with the
input offsets it reflects). Snapshot pacing is not state: a restored learner publishes
its first snapshots as soon as it has updated something.

>>> from streams.policies import make_policy
>>> learner = OnlineLearner(policy_factory=lambda name: make_policy(name, seed=1), allowed_lateness_ms=0)
>>> learner.policies
{}
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from streams.events import MIN_TS_MS, Decision, ListeningEvent, ModelSnapshot
from streams.learning.errors import InvalidJoinerState, InvalidLearnerState
from streams.learning.joiner import Admission, RewardJoiner
from streams.learning.rewards import RewardFn, one_per_play
from streams.policies import Policy, policy_from_state

Partition = tuple[str, int]

#: Version of the layout written by ``OnlineLearner.to_state``.
STATE_FORMAT = 1

DEFAULT_WINDOW_MS = 30 * 60 * 1000
DEFAULT_LATENESS_MS = 60 * 60 * 1000


class OnlineLearner:
    def __init__(
        self,
        *,
        policy_factory: Callable[[str], Policy],
        policies: Mapping[str, Policy] | None = None,
        window_ms: int = DEFAULT_WINDOW_MS,
        allowed_lateness_ms: int = DEFAULT_LATENESS_MS,
        reward_fn: RewardFn = one_per_play,
        snapshot_every_updates: int = 200,
        snapshot_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_factory = policy_factory
        self.policies: dict[str, Policy] = dict(policies or {})
        self.joiner = RewardJoiner(window_ms=window_ms, reward_fn=reward_fn)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.snapshot_every_updates = snapshot_every_updates
        self.snapshot_every_s = snapshot_every_s
        self.clock = clock
        self.newest: dict[Partition, int] = {}
        self.updates = 0
        self.late = 0
        self._since_snapshot: dict[str, int] = {}
        self._last_snapshot: dict[str, float] = {}
        self._last_ts = 0

    def add_decision(self, decision: Decision, partition: Partition) -> Admission:
        self._observe(partition, decision.ts)
        admission = self.joiner.add_decision(decision)
        if admission is Admission.LATE:
            self.late += 1
        return admission

    def add_event(self, event: ListeningEvent, partition: Partition) -> Admission:
        self._observe(partition, event.ts)
        admission = self.joiner.add_event(event)
        if admission is Admission.LATE:
            self.late += 1
        return admission

    def declare(self, partition: Partition) -> None:
        """An assigned partition holds the watermark back until it has delivered a record."""
        self.newest.setdefault(partition, -1)

    def forget(self, partition: Partition) -> None:
        self.newest.pop(partition, None)

    @property
    def watermark(self) -> int | None:
        if not self.newest or min(self.newest.values()) < 0:
            return None
        return min(self.newest.values()) - self.allowed_lateness_ms

    def advance(self) -> int:
        """Close the reward windows the watermark has passed; update their policies."""
        watermark = self.watermark
        if watermark is None:
            return 0
        # Each policy learns its closed decisions in closing order, in one batch (``update_many``
        # gives the very state that one ``update`` after the other would).
        by_policy: dict[str, list[tuple[Mapping[str, float], str, float]]] = {}
        for decision, reward, _ in self.joiner.close_windows(watermark):
            updates = by_policy.get(decision.policy)
            if updates is None:
                updates = by_policy[decision.policy] = []
            updates.append((decision.context, decision.arm, reward))
        applied = 0
        for name, updates in by_policy.items():
            self.policy(name).update_many(updates)
            self._since_snapshot[name] = self._since_snapshot.get(name, 0) + len(updates)
            applied += len(updates)
        self.updates += applied
        return applied

    def policy(self, name: str) -> Policy:
        policy = self.policies.get(name)
        if policy is None:
            policy = self.policies[name] = self.policy_factory(name)
        return policy

    def due_snapshots(self) -> list[ModelSnapshot]:
        """Snapshots of the policies that changed enough, or long enough ago, since their last one."""
        now = self.clock()
        due = []
        for name, pending in self._since_snapshot.items():
            if not pending:
                continue
            stale = now - self._last_snapshot.get(name, 0.0) >= self.snapshot_every_s
            if pending >= self.snapshot_every_updates or stale:
                due.append(self.snapshot(name))
                self._since_snapshot[name] = 0
                self._last_snapshot[name] = now
        return due

    def republish(self) -> None:
        """Make a snapshot of every policy due (after a restore: the last ones may never have been published)."""
        for name in self.policies:
            self._since_snapshot[name] = max(1, self._since_snapshot.get(name, 0))
        self._last_snapshot.clear()

    def snapshot(self, name: str) -> ModelSnapshot:
        policy = self.policies[name]
        return ModelSnapshot(
            snapshot_id=uuid.uuid4().hex,
            policy=name,
            version=policy.version,
            ts=self.event_time,
            updates=policy.version,
            state=policy.to_state(),
        )

    @property
    def event_time(self) -> int:
        """The newest event time seen (the earliest valid one before any record)."""
        return max(self._last_ts, MIN_TS_MS)

    def stats(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "late": self.late,
            "open_decisions": self.joiner.open_decisions,
            "watermark": self.watermark,
            "versions": {name: policy.version for name, policy in sorted(self.policies.items())},
        }

    def _observe(self, partition: Partition, ts: int) -> None:
        if ts > self.newest.get(partition, -1):
            self.newest[partition] = ts
        if ts > self._last_ts:
            self._last_ts = ts

    # -- JSON state (the policy factory and the reward function are code: pass them again) --

    def to_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "policies": {name: policy.to_state(include_rng=True) for name, policy in self.policies.items()},
            "joiner": self.joiner.to_state(),
            "newest": [[topic, partition, ts] for (topic, partition), ts in self.newest.items()],
            "updates": self.updates,
            "late": self.late,
            "last_ts": self._last_ts,
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        policy_factory: Callable[[str], Policy],
        reward_fn: RewardFn = one_per_play,
        snapshot_every_updates: int = 200,
        snapshot_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> OnlineLearner:
        """The learner ``to_state`` described; window and lateness come from the state."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise InvalidLearnerState(f"format: expected an online-learner state of format {STATE_FORMAT}")
        try:
            policies = state["policies"]
            if not isinstance(policies, Mapping):
                raise InvalidLearnerState("policies: expected an object")
            learner = cls(
                policy_factory=policy_factory,
                policies={str(name): policy_from_state(policy) for name, policy in policies.items()},
                allowed_lateness_ms=int(state["allowed_lateness_ms"]),
                reward_fn=reward_fn,
                snapshot_every_updates=snapshot_every_updates,
                snapshot_every_s=snapshot_every_s,
                clock=clock,
            )
            learner.joiner = RewardJoiner.from_state(state["joiner"], reward_fn=reward_fn)
            for topic, partition, ts in state["newest"]:
                learner.newest[(str(topic), int(partition))] = int(ts)
            learner.updates = int(state["updates"])
            learner.late = int(state["late"])
            learner._last_ts = int(state["last_ts"])
        except InvalidLearnerState:
            raise
        except InvalidJoinerState as exc:
            raise InvalidLearnerState(f"joiner: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:  # InvalidPolicyState and UnknownPolicy among them
            raise InvalidLearnerState(f"malformed learner state ({type(exc).__name__}: {exc})") from exc
        return learner
