"""The learning path's pure logic: attributing reward events to decisions.

The learner agent feeds decisions and listening events to a ``RewardJoiner``, calls
``advance(watermark)`` and passes each closed ``Reward`` to ``policy.update``.
"""

from streams.learning.errors import InvalidJoinerState
from streams.learning.joiner import DEFAULT_WINDOW_MS, NO_WATERMARK, Admission, Reward, RewardJoiner
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
    "InvalidJoinerState",
    "MatchFn",
    "Reward",
    "RewardFn",
    "RewardJoiner",
    "matches_genre",
    "matches_item",
    "matches_item_or_genre",
    "ms_played",
    "one_per_play",
]
