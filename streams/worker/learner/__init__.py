"""The learner: a Faust app of its own (id and consumer group ``<prefix>tandem-learner``) that joins
``decisions`` with reward events, updates the policies, publishes snapshots to ``models`` and
stores its whole state with its input offsets as checkpoints on ``learner-checkpoints``.

- ``streams.worker.learner.app``: ``make_learner_app``, the app and its status file;
- ``streams.worker.learner.agent``: ``LearnerAdapter`` and ``install_learner``, the agent and the
  acknowledgement rules that make it exact across a crash; restore and warm start;
- ``streams.worker.learner.commands``: ``tandem learner run | status``.

The app and the agent are imported on first use (they pull in the policies: River, SciPy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports
from streams.worker.learner.commands import learner_status, run_learner

if TYPE_CHECKING:
    from streams.worker.learner.agent import (
        CHECKPOINT_EVERY_S,
        LearnerAdapter,
        install_learner,
        make_learner,
        newest_checkpoint,
        store_checkpoint,
        variant_params,
        warm_start,
    )
    from streams.worker.learner.app import (
        LEARNER_APP_NAME,
        LEARNER_STATUS_FILE,
        learner_snapshot,
        learner_status_path,
        make_learner_app,
    )

__all__ = [
    "CHECKPOINT_EVERY_S",
    "LEARNER_APP_NAME",
    "LEARNER_STATUS_FILE",
    "LearnerAdapter",
    "install_learner",
    "learner_snapshot",
    "learner_status",
    "learner_status_path",
    "make_learner",
    "make_learner_app",
    "newest_checkpoint",
    "run_learner",
    "store_checkpoint",
    "variant_params",
    "warm_start",
]

#: Exports imported on first use, and their modules.
_LAZY = {
    **dict.fromkeys(
        ("CHECKPOINT_EVERY_S", "LearnerAdapter", "install_learner", "make_learner", "newest_checkpoint",
         "store_checkpoint", "variant_params", "warm_start"),
        "streams.worker.learner.agent",
    ),
    **dict.fromkeys(
        ("LEARNER_APP_NAME", "LEARNER_STATUS_FILE", "learner_snapshot", "learner_status_path", "make_learner_app"),
        "streams.worker.learner.app",
    ),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
