"""Open-loop load generator for ``POST /recommend``: a fixed schedule, latency from the scheduled time.

Request ``i`` is due at ``start + i / rps`` whatever happened to the earlier ones (open
loop), and its latency is measured from that due time, not from when it was actually
sent: if the server (or this process) falls behind, the queueing shows up in the
percentiles instead of silently lowering the offered load (no coordinated omission).
Prints one JSON object; asserts nothing.

    python -m bench.loadgen --url http://127.0.0.1:8080 --rps 500 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from typing import Any

import aiohttp

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: event times start here, inside the demo experiment


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))  # nearest rank
    return sorted_values[index]


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, Any], due: float,
               latencies: list[float], errors: list[str]) -> None:
    try:
        async with session.post(url, json=body) as response:
            await response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
                return
    except (TimeoutError, aiohttp.ClientError) as exc:
        errors.append(type(exc).__name__)
        return
    latencies.append(time.perf_counter() - due)


async def generate(*, url: str, rps: float, duration_s: float, warmup_s: float = 2.0, users: int = 10_000,
                   seed: int = 1, timeout_s: float = 5.0, event_ms_per_s: int = 60_000,
                   t0_ms: int = T0_MS) -> dict[str, Any]:
    """Offer ``rps`` for ``warmup_s + duration_s``; statistics cover the last ``duration_s`` only.

    Users are drawn uniformly from ``users`` ids; each request carries an event time ``ts``
    from ``t0_ms`` on, advancing ``event_ms_per_s`` per second of the schedule (a compressed clock).
    """
    rng = random.Random(seed)
    endpoint = url.rstrip("/") + "/recommend"
    total = int((warmup_s + duration_s) * rps)
    warm = int(warmup_s * rps)
    measured: list[float] = []
    ignored: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        tasks = []
        start = time.perf_counter() + 0.2
        for i in range(total):
            due = start + i / rps
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {"user_id": f"user-{rng.randrange(users)}", "ts": t0_ms + int(i / rps * event_ms_per_s)}
            sink = measured if i >= warm else ignored
            tasks.append(asyncio.ensure_future(_one(session, endpoint, body, due, sink, errors)))
        await asyncio.gather(*tasks)
        finished = time.perf_counter()
    measured.sort()
    span = finished - (start + warm / rps)
    ms = [x * 1e3 for x in measured]
    return {
        "offered_rps": rps,
        "achieved_rps": round(len(measured) / span, 1) if span > 0 else None,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "requests": total - warm,
        "completed": len(measured),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "p50_ms": _round(percentile(ms, 0.50)),
        "p90_ms": _round(percentile(ms, 0.90)),
        "p99_ms": _round(percentile(ms, 0.99)),
        "p999_ms": _round(percentile(ms, 0.999)),
        "max_ms": _round(ms[-1] if ms else None),
        "loadgen_cpu_s": round(time.process_time(), 2),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--rps", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(generate(url=args.url, rps=args.rps, duration_s=args.duration, warmup_s=args.warmup,
                                  users=args.users, seed=args.seed))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
