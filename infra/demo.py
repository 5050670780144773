"""The main job, run by ``make demo``: everything on an embedded broker, then stop it all."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from infra.broker import EmbeddedBroker
from infra.kafka_config import producer_config
from infra.settings import Settings
from infra.topic_reader import read_topic
from infra.topics import apply_topics
from streams.events import decode_event
from streams.producer import EventPublisher, publish_lines

logger = logging.getLogger(__name__)

SAMPLE_EVENTS = Path(__file__).resolve().parent.parent / "examples" / "events.jsonl"


def run_demo(*, settings: Settings) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tandem-demo-") as workdir:
        log_path = Path(workdir) / "broker.log"
        with EmbeddedBroker(binary=settings.broker_binary, log_path=log_path) as broker:
            settings = settings.model_copy(
                update={"bootstrap_servers": broker.bootstrap, "state_dir": Path(workdir)}
            )
            print(f"[demo] embedded broker on {broker.bootstrap}", flush=True)
            report = apply_topics(settings)
            print(f"[demo] topics: {len(report.created)} created, {len(report.existing)} existing", flush=True)
            topic = settings.topic("events")
            with SAMPLE_EVENTS.open(encoding="utf-8") as lines, EventPublisher(
                config=producer_config(settings), topic=topic
            ) as publisher:
                published = publish_lines(publisher, lines)
            print(f"[demo] published {published.accepted} events from {SAMPLE_EVENTS.name}", flush=True)
            records = read_topic(settings, topic)
            events = [decode_event(record.value) for record in records]
            users = {event.user_id for event in events}
            summary = {
                "published": published.accepted,
                "rejected": len(published.rejected),
                "read_back": len(events),
                "users": len(users),
                "partitions": len({record.partition for record in records}),
                "wall_s": round(time.monotonic() - started, 2),
            }
            print(json.dumps(summary), flush=True)
    ok = summary["read_back"] == summary["published"] and not summary["rejected"]
    if not ok:
        print("[demo] FAILED: what was read back differs from what was published", file=sys.stderr)
    return 0 if ok else 1
