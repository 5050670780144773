"""``tandem stats FILE|-``: JSON sufficient statistics in, JSON results out.

>>> import io, json
>>> data = {"control": "a", "metrics": [{"name": "m", "kind": "proportion", "role": "success",
...         "variants": [{"name": "a", "n": 1000, "sum": 100}, {"name": "b", "n": 1000, "sum": 150}]}]}
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "in.json"
>>> _ = path.write_text(json.dumps(data))
>>> buf = io.StringIO()
>>> run_stats(str(path), out=buf)
0
>>> json.loads(buf.getvalue())["decision"]["verdict"]
'ship'
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from experiments.stats.engine import analyse
from experiments.stats.errors import InvalidStatsInput


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def run_stats(argv_path: str, *, out: TextIO = sys.stdout, err: TextIO | None = None,
              stdin: TextIO | None = None) -> int:
    """Read JSON from ``argv_path`` (``-`` for stdin), write the engine's JSON to ``out``.

    Returns 0 on success, 2 on bad input (unreadable file, invalid JSON, invalid fields)
    with one ``error: <field>: <problem>`` line per problem on ``err`` (stderr).
    """
    err = sys.stderr if err is None else err
    try:
        if argv_path == "-":
            text = (stdin or sys.stdin).read()
        else:
            with open(argv_path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        print(f"error: cannot read {argv_path}: {exc.strerror or exc}", file=err)
        return 2
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        print(f"error: {argv_path}: invalid JSON: {exc}", file=err)
        return 2
    try:
        result = analyse(data)
    except InvalidStatsInput as exc:
        for path, msg in exc.problems:
            print(f"error: {path}: {msg}" if path else f"error: {msg}", file=err)
        return 2
    out.write(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.stats FILE|-`` (the ``tandem stats`` command calls :func:`run_stats`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: tandem stats FILE|-", file=sys.stderr)
        return 2
    return run_stats(args[0])
