"""The statistics engine: sufficient statistics in, effects, tests and a decision out.

Use :func:`analyse` on a decoded JSON input (an :class:`Analysis`; ``.to_dict()`` is the
JSON output), or :func:`run_stats` for the file interface behind ``tandem stats FILE|-``.
"""

from experiments.stats.bayesian import BayesianPosterior, Posterior, posterior_summary
from experiments.stats.cli import run_stats
from experiments.stats.correction import adjust
from experiments.stats.cuped import CupedStats, cuped_adjust, pooled_theta
from experiments.stats.decision import Finding, decide
from experiments.stats.engine import analyse
from experiments.stats.errors import InvalidStatsInput, StatsError
from experiments.stats.inputs import StatsInput, parse_input
from experiments.stats.means import Arm, Effect, compare, mean_arm, proportion_arm, sample_moments
from experiments.stats.power import (
    achieved_power,
    guardrail_power,
    minimum_detectable_effect,
    proportion_sample_size_per_arm,
    sample_size_per_arm,
)
from experiments.stats.ratio import ratio_arm
from experiments.stats.results import (
    AlwaysValidDesign,
    Analysis,
    Comparison,
    CupedAdjustment,
    Decision,
    GroupSequentialDesign,
    HealthCheck,
    Interval,
    MetricResult,
    Power,
    Result,
    SequentialDesign,
    SrmCheck,
    TestOutcome,
    VariantDecision,
    VariantSummary,
)
from experiments.stats.sequential import (
    AlwaysValid,
    GroupSequential,
    group_sequential_boundaries,
    obf_spending,
    power_spending,
)
from experiments.stats.srm import SrmResult, anytime_valid_p, srm_check

__all__ = [
    "AlwaysValid", "AlwaysValidDesign", "Analysis", "Arm", "BayesianPosterior", "Comparison", "CupedAdjustment",
    "CupedStats", "Decision", "Effect", "Finding", "GroupSequential", "GroupSequentialDesign", "HealthCheck",
    "Interval", "InvalidStatsInput", "MetricResult", "Posterior", "Power", "Result", "SequentialDesign", "SrmCheck",
    "SrmResult", "StatsError", "StatsInput", "TestOutcome", "VariantDecision", "VariantSummary", "achieved_power",
    "adjust", "analyse", "anytime_valid_p", "compare", "cuped_adjust", "decide", "group_sequential_boundaries",
    "guardrail_power", "mean_arm", "minimum_detectable_effect", "obf_spending", "parse_input", "pooled_theta",
    "posterior_summary", "power_spending", "proportion_arm", "proportion_sample_size_per_arm", "ratio_arm",
    "run_stats", "sample_moments", "sample_size_per_arm", "srm_check",
]
