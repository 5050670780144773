"""Scenario 3, hostile input: bad records interleaved with valid ones on every input topic.

Bad records of every kind (malformed JSON, not UTF-8, not an object, wrong types, missing and
unknown fields, absurd timestamps, NaN, oversized values, exposures of unknown experiments, and
invalid spec versions published straight to the experiments topic, under the running experiment's
id and under new ids) are interleaved, seeded, with a valid log on ``events``, ``exposures``,
``decisions`` and ``experiments``. Every consumer then reads it all: the aggregator, the archiver,
the features worker, the learner and serving's live config. After the run:

- 0 crashes: every process ran until the harness stopped it (or exited 0 when idle);
- every bad record is a dead letter, with a reason, of every stage that reads its topic (an exposure
  of an unknown experiment is a well-formed record: only the aggregator refuses it), and no valid
  record is a dead letter;
- every valid record is counted: the aggregator's figures equal the core's on the valid records
  alone, the archive holds every valid record once, the online store equals the feature oracle and
  the learner's state an uninterrupted learner's;
- the aggregator and serving keep the last good version of the spec.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from experiments.aggregation.store import STAGE as AGGREGATION_STAGE
from experiments.batch.archiver import STAGE as ARCHIVE_STAGE
from experiments.lifecycle import apply_spec
from experiments.spec import DEMO_SPEC_PATH, ExperimentSpec, load_spec, spec_to_json
from infra.chaos import crashes, oracles
from infra.chaos.stack import ChaosStack, chaos_stack, http_json, wait_until
from infra.kafka.broker import free_port
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import DEAD_LETTERS, DECISIONS, EVENTS, EXPERIMENTS, EXPOSURES
from streams.events import decode_dead_letter

logger = logging.getLogger(__name__)

SCENARIO = "hostile_input"
BAD_RECORDS = {True: 300, False: 10_000}
HOSTILE_KEY = b"hostile-"
FEATURES_STAGES = ("decode", "features")
LEARNER_STAGE = "personalization.learner"
SERVING_STAGE = "serving.live_config"

#: Which stages read each topic, and so must dead-letter its bad records.
READERS = {
    "events": (AGGREGATION_STAGE, ARCHIVE_STAGE, "features"),
    "exposures": (AGGREGATION_STAGE, ARCHIVE_STAGE),
    "decisions": (ARCHIVE_STAGE, LEARNER_STAGE),
    "experiments": (AGGREGATION_STAGE, SERVING_STAGE),
}


def _broken(rng: random.Random, valid: dict[str, Any], role: str) -> tuple[str, bytes]:
    """One bad record made from a valid one: its kind and its bytes."""
    kind = rng.choice(["malformed", "not_utf8", "not_object", "wrong_type", "missing_field", "unknown_field",
                       "absurd_ts", "nan", "oversized"] + (["unknown_experiment"] * 2 if role == "exposures" else []))
    record = dict(valid)
    if kind == "malformed":
        return kind, rng.choice([b"{not json", b"", b'{"ts": ', b"}{", json.dumps(record).encode()[:-1]])
    if kind == "not_utf8":
        return kind, b'{"user_id": "\xff\xfe"}'
    if kind == "not_object":
        return kind, rng.choice([b"null", b"[1, 2]", b'"text"', b"42"])
    if kind == "wrong_type":
        field = rng.choice(sorted(set(record) - {"v"}))
        record[field] = _wrong_type(rng, record[field])
    elif kind == "missing_field":
        for field in ("ts", "user_id"):
            record.pop(field, None)
    elif kind == "unknown_field":
        record["admin"] = True
    elif kind == "absurd_ts":
        record["ts"] = rng.choice([-1, 0, 10**15, 2**63, 946_684_799_999])
    elif kind == "nan":
        return kind, json.dumps(record).replace(f'"ts": {valid["ts"]}', '"ts": NaN').encode()
    elif kind == "oversized":
        record["user_id"] = "u" * 70_000  # over the 64 KiB record limit and the 128-character id limit
    elif kind == "unknown_experiment":
        record["experiment"] = f"no-such-experiment-{rng.randrange(1000)}"
        record["exposure_id"] = f"hostile-{rng.getrandbits(64):016x}"  # a record of its own, not a duplicate
    return kind, json.dumps(record).encode()


def _wrong_type(rng: random.Random, value: Any) -> Any:
    """A JSON value of another type than ``value``'s (strict validation refuses every one)."""
    if isinstance(value, str):
        return rng.choice([7, 7.5, [value], {"value": value}, True])
    if isinstance(value, bool | int | float):
        return rng.choice([str(value), [value], {"value": value}])
    if isinstance(value, list):
        return rng.choice(["list", 7, {"items": value}])
    if isinstance(value, dict):
        return rng.choice(["dict", 7, [value]])
    return rng.choice([7, [7], {"a": 7}])  # None, where a name or an object is allowed


def _bad_specs(rng: random.Random, spec: ExperimentSpec, count: int) -> list[tuple[str, bytes, bytes]]:
    """Invalid versions of the running experiment and invalid new experiments, for the experiments topic."""
    good = json.loads(spec_to_json(spec))
    out = []
    for number in range(count):
        broken = json.loads(json.dumps(good))
        kind = rng.choice(["malformed", "weights", "no_variants", "unknown_control", "wrong_type", "missing",
                           "unknown_field", "bad_metric"])
        if kind == "malformed":
            value = b'{"id": "' + spec.id.encode() + b'", '
        else:
            if kind == "weights":
                broken["variants"][0]["weight"] = -0.5
            elif kind == "no_variants":
                broken["variants"] = []
            elif kind == "unknown_control":
                broken["control"] = "nobody"
            elif kind == "wrong_type":
                broken["start"] = "the day after tomorrow"
            elif kind == "missing":
                broken.pop("metrics")
            elif kind == "unknown_field":
                broken["override"] = {"all": "treatment"}
            else:
                broken["metrics"][0]["window"] = {"delay": "-3d", "length": "0d"}
            value = json.dumps(broken).encode()
        key = spec.id if number % 3 else f"hostile-spec-{number}"
        if key != spec.id and kind != "malformed":
            value = value.replace(f'"id": "{spec.id}"'.encode(), f'"id": "{key}"'.encode())
        out.append(("experiments", key.encode(), value))
    return out


def hostile_log(spec: ExperimentSpec, *, bad: int, seed: int, quick: bool) -> tuple[list[crashes.Record], Counter[str]]:
    """The valid log with ``bad`` bad records interleaved (keys of bad records start with ``hostile-``,
    except spec versions, keyed by their experiment id); and the count of each kind of bad record."""
    rng = random.Random(seed)
    valid = crashes.experiment_log(spec, users=crashes.LOG_SIZE[quick][0], days=crashes.LOG_SIZE[quick][1],
                                   seed=seed)
    valid += crashes.learner_log(decisions=crashes.LOG_SIZE[quick][0] * 5, users=60, seed=seed)
    valid.sort(key=lambda record: json.loads(record[2])["ts"])
    kinds: Counter[str] = Counter()
    records: list[crashes.Record] = list(valid)
    specs = max(3, bad // 50)
    for role, key, value in _bad_specs(rng, spec, specs):
        kinds["experiments/invalid_spec"] += 1
        records.insert(rng.randrange(len(records) + 1), (role, key, value))
    by_role = defaultdict(list)
    for role, _, value in valid:
        by_role[role].append(value)
    for number in range(bad - specs):
        role = ("events", "exposures", "decisions")[number % 3]
        kind, value = _broken(rng, json.loads(rng.choice(by_role[role])), role)
        kinds[f"{role}/{kind}"] += 1
        records.insert(rng.randrange(len(records) + 1), (role, HOSTILE_KEY + str(number).encode(), value))
    return records, kinds


def _run_consumers(stack: ChaosStack) -> dict[str, Any]:
    """Every consumer over the whole log; the serving URL. Raises if one of them crashed."""
    from streams.worker.status import read_status, status_path

    serve_port = free_port()
    serve_url = f"http://127.0.0.1:{serve_port}"
    stack.start("aggregator", "experiments", "aggregate", "--allowed-lateness", "30m", "--idle-exit", "6")
    stack.start("archiver", "archive", "run", "--flush-interval", "0.5", "--idle-exit", "6")
    features = stack.start("features", "features", "run")
    stack.start("learner", "learner", "run")
    stack.start("serving", "serve", "--port", str(serve_port))
    exited: dict[str, int] = {}

    def alive() -> None:
        for name, process in stack.supervisor.processes.items():
            code = process.poll()
            if code is not None and not (name in ("aggregator", "archiver") and code == 0):
                raise RuntimeError(f"{name} exited with {code}: {stack.log_tail(name)}")
            if code is not None:
                exited[name] = code

    def features_caught_up() -> bool:
        status = read_status(status_path(stack.settings))
        return bool(status and status.get("pid") == features and status["lag"] == 0 and status["waiting"] == 0
                    and status["assigned_partitions"])

    _, ends = oracles.learner_oracle(stack.settings)

    def learner_done() -> bool:
        checkpoint = crashes._newest_checkpoint(stack.settings)  # noqa: SLF001
        return checkpoint is not None and {(p.topic, p.partition): p.offset
                                           for p in checkpoint.head.positions} == ends

    wait_until(lambda: (http_json(f"{serve_url}/health") or {}).get("live_config", {}).get("caught_up") is True,
               timeout_s=120, what="serving's live config", alive=alive)
    wait_until(features_caught_up, timeout_s=600, what="the features worker", alive=alive, interval_s=0.3)
    wait_until(learner_done, timeout_s=600, what="the learner", alive=alive, interval_s=0.5)
    wait_until(lambda: {"aggregator", "archiver"} <= exited.keys(), timeout_s=900,
               what="the aggregator and the archiver to finish", alive=alive, interval_s=0.3)
    health = http_json(f"{serve_url}/health")
    alive()
    return {"serving_health": health, "exited": exited}


def _dead_letter_check(stack: ChaosStack, good_spec: bytes) -> dict[str, Any]:
    """Per stage: bad records it reads that are not dead letters, and valid records that are."""
    settings = stack.settings
    good_specs = {r.offset for r in read_topic(settings, settings.topic(EXPERIMENTS))
                  if r.key and r.value and not r.key.startswith(HOSTILE_KEY) and r.value == good_spec}
    bad: dict[str, set[tuple[str, int, int]]] = defaultdict(set)
    valid: set[tuple[str, int, int]] = set()
    for role, topic in (("events", EVENTS), ("exposures", EXPOSURES), ("decisions", DECISIONS),
                        ("experiments", EXPERIMENTS)):
        for record in read_topic(settings, settings.topic(topic)):
            where = (record.topic, record.partition, record.offset)
            hostile = (record.offset not in good_specs) if role == "experiments" else bool(
                record.key and record.key.startswith(HOSTILE_KEY))
            if not hostile:
                valid.add(where)
                continue
            unknown_experiment = role == "exposures" and b"no-such-experiment-" in (record.value or b"")
            for stage in READERS[role]:
                if unknown_experiment and stage != AGGREGATION_STAGE:
                    continue  # a well-formed exposure: only the aggregator knows the experiment does not exist
                bad[stage].add(where)
    letters: dict[str, dict[tuple[str, int, int], str]] = defaultdict(dict)
    for record in read_topic(settings, settings.topic(DEAD_LETTERS)):
        letter = decode_dead_letter(record.value)
        stage = "features" if letter.stage in FEATURES_STAGES else letter.stage
        letters[stage][(letter.source_topic, letter.partition, letter.offset)] = letter.error
    figures = {}
    for stage, expected in sorted(bad.items()):
        got = letters.get(stage, {})
        figures[stage] = {
            "bad_records_read": len(expected),
            "dead_lettered": len(expected & got.keys()),
            "not_dead_lettered": len(expected - got.keys()),
            "without_reason": sum(1 for where in expected & got.keys() if not got[where].strip()),
            "valid_dead_lettered": len(valid & got.keys()),
            "example_reasons": sorted({got[w] for w in list(expected & got.keys())[:200]}, key=len)[:3],
        }
    return figures


def run(work_dir: Path, seed: int, quick: bool) -> dict[str, object]:
    spec = apply_spec(None, load_spec(DEMO_SPEC_PATH), who="chaos", at=crashes.T0_MS)
    good_spec = spec_to_json(spec)
    records, kinds = hostile_log(spec, bad=BAD_RECORDS[quick], seed=seed, quick=quick)
    with chaos_stack(work_dir, prefix="hostile.") as stack:
        crashes.publish(stack.settings, [("experiments", spec.id.encode(), good_spec), *records])
        run_figures = _run_consumers(stack)
        stack.supervisor.stop_all()
        letters = _dead_letter_check(stack, good_spec)
        settings = stack.settings
        expected, oracle_letters = oracles.aggregation_oracle(
            settings, spec.id, keep=lambda r: not (r.key or b"").startswith(HOSTILE_KEY) and (
                r.topic != settings.topic(EXPERIMENTS) or r.value == good_spec))
        aggregated = oracles.differences(oracles.published_metrics(settings, spec.id), expected)
        archive = oracles.archive_check(settings)
        features_expected = oracles.features_oracle(settings)
        features_found = oracles.differences(oracles.online_features(settings, sorted(features_expected)),
                                             features_expected)
        learner_expected, _ = oracles.learner_oracle(settings)
        learner_state = crashes._newest_checkpoint(settings).state()  # noqa: SLF001
    served = (run_figures["serving_health"] or {}).get("experiments", {})
    good_variants = {v.name: sorted(v.params) for v in spec.variants}
    valid_total = sum(1 for r in records if not r[1].startswith(HOSTILE_KEY)) - kinds["experiments/invalid_spec"] + 1
    figures: dict[str, Any] = {
        "bad_records": sum(kinds.values()), "valid_records": valid_total, "bad_by_kind": dict(sorted(kinds.items())),
        "crashes": 0, "dead_letters_by_stage": letters,
        "aggregator": {"metric_records": len(expected), "differences_from_valid_only_oracle": len(aggregated),
                       "examples": aggregated[:5], "oracle_dead_letters": oracle_letters},
        "archiver": {role: archive[role] for role in ("events", "exposures", "decisions")},
        "features": {"users": len(features_expected), "differences": len(features_found),
                     "examples": features_found[:5]},
        "learner": {"updates": learner_state["updates"], "oracle_updates": learner_expected.learner.updates,
                    "state_equals_oracle": oracles.comparable_learner_state(learner_state)
                    == oracles.comparable_learner_state(learner_expected.learner.to_state())},
        "serving_keeps_last_good_spec": served.get(spec.id, {}).get("variants") == good_variants,
        "serving_reload_errors": (run_figures["serving_health"] or {}).get("live_config", {}).get("reload_errors"),
    }
    ok = (all(f["not_dead_lettered"] == 0 and f["without_reason"] == 0 and f["valid_dead_lettered"] == 0
              for f in letters.values())
          and set(letters) == {AGGREGATION_STAGE, ARCHIVE_STAGE, "features", LEARNER_STAGE, SERVING_STAGE}
          and not aggregated and bool(expected)
          and all(a["missing"] == 0 and a["twice"] == 0 for a in figures["archiver"].values())
          and not features_found and figures["learner"]["state_equals_oracle"]
          and figures["serving_keeps_last_good_spec"])
    return {"scenario": SCENARIO, "ok": ok, "figures": figures,
            "done": f"{figures['bad_records']} bad records of {len(kinds)} kinds interleaved with {valid_total} valid "
                    "ones on events, exposures, decisions and experiments, read by the aggregator, archiver, "
                    "features worker, learner and serving"}
