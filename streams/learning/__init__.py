"""The learning path's pure logic: attributing reward events to decisions, learning from them.

A ``RewardJoiner`` joins decisions with the reward events that follow them; the
``OnlineLearner`` feeds it, moves its watermark and passes each closed ``Reward`` to
``policy.update``; a ``CheckpointedLearner`` adds the input offsets, so that the learner
agent can store state and positions together and resume exactly after a crash.
"""

from streams.learning.checkpoint import (
    Checkpoint,
    CheckpointedLearner,
    Offered,
    OfferOutcome,
    Slot,
    find_checkpoint,
    pack,
    part_key,
)
from streams.learning.errors import InvalidJoinerState, InvalidLearnerState
from streams.learning.joiner import DEFAULT_WINDOW_MS, NO_WATERMARK, Admission, Reward, RewardJoiner
from streams.learning.learner import OnlineLearner, Partition
from streams.learning.rewards import (
    MatchFn,
    RewardFn,
    matches_genre,
    matches_item,
    matches_item_or_genre,
    ms_played,
    one_per_play,
)

__all__ = [
    "DEFAULT_WINDOW_MS",
    "NO_WATERMARK",
    "Admission",
    "Checkpoint",
    "CheckpointedLearner",
    "InvalidJoinerState",
    "InvalidLearnerState",
    "MatchFn",
    "OfferOutcome",
    "Offered",
    "OnlineLearner",
    "Partition",
    "Reward",
    "RewardFn",
    "RewardJoiner",
    "Slot",
    "find_checkpoint",
    "matches_genre",
    "matches_item",
    "matches_item_or_genre",
    "ms_played",
    "one_per_play",
    "pack",
    "part_key",
]
