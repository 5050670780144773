"""How the experimentation stack reads YAML and reports a failed validation: one field path per problem.

>>> from pydantic import BaseModel, ValidationError
>>> class Window(BaseModel):
...     length: int
>>> try:
...     Window.model_validate({"length": "long"})
... except ValidationError as exc:
...     print(describe(exc))
length: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from experiments.errors import InvalidSpec

T = TypeVar("T")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith(("function-", "lax-", "json-")):
            out += f".{part}" if out else part
    return out


def describe(error: ValidationError) -> str:
    """Every problem as ``field.path: message``, joined by ``; ``."""
    parts = []
    items = error.errors(include_url=False)
    for item in items:
        if item["type"] == "too_short" and any(
            len(other["loc"]) > len(item["loc"]) and other["loc"][: len(item["loc"])] == item["loc"]
            for other in items
        ):
            continue  # a collection whose items failed is reported through those items
        where = _location(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        # Validators of nested models name the field themselves: "window: ..." at metrics[2].
        head, sep, rest = message.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head):
            where, message = (f"{where}.{head}" if where else head), rest
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def load_yaml(path: str | Path, parse: Callable[[Any], T]) -> T:
    """Read a YAML file and ``parse`` it; every ``InvalidSpec`` starts with the file name."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"{path}: not valid YAML ({exc})") from None
    try:
        return parse(data)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{path}: {exc}") from None
