"""The topic table: one definition per topic, each value schema resolvable, no topic named by a string in code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from infra.kafka.topics import TOPICS, Topic
from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[4]
PACKAGES = ("streams", "experiments", "feature_store", "infra", "bench")


def test_names_are_unique():
    names = [topic.name for topic in TOPICS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("topic", TOPICS, ids=lambda topic: topic.name)
def test_value_schema_names_a_model_or_builder_that_exists(topic: Topic):
    module, _, attribute = topic.value_schema.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_a_topic_object_and_its_name_give_the_same_broker_name():
    settings = Settings(topic_prefix="t.")
    assert [settings.topic(topic) for topic in TOPICS] == [f"t.{topic.name}" for topic in TOPICS]


def test_code_refers_to_topics_by_object_not_by_string():
    literal = re.compile(r"""\.topic\(\s*["']""")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line) and not line.lstrip().startswith(">>>")
    ]
    assert offenders == []
