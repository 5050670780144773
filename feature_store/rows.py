"""Feature rows (dicts) to an Arrow table of the store's schema, with precise errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from feature_store.definitions import JOIN_KEY, TIMESTAMP
from feature_store.errors import InvalidFeatureRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidFeatureRow(f"{where}: {TIMESTAMP}: a naive datetime is ambiguous, give it a timezone")
        return value.astimezone(UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + timedelta(milliseconds=value)
    raise InvalidFeatureRow(f"{where}: {TIMESTAMP}: expected an aware datetime or int ms, got {value!r}")


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Validate rows: exactly ``user_id``, ``event_timestamp`` and every feature of the schema."""
    names = schema.names
    expected = set(names)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    kinds = {field.name: pa.types.is_floating(field.type) for field in schema}
    for n, row in enumerate(rows):
        where = f"row {n}"
        keys = set(row)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(keys - expected)
            raise InvalidFeatureRow(f"{where}: missing {missing}, unexpected {extra}")
        user = row[JOIN_KEY]
        if not isinstance(user, str) or not user:
            raise InvalidFeatureRow(f"{where}: {JOIN_KEY}: expected a non-empty string, got {user!r}")
        columns[JOIN_KEY].append(user)
        columns[TIMESTAMP].append(_timestamp(row[TIMESTAMP], where))
        for name in names[2:]:
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                not kinds[name] and not isinstance(value, int)):
                raise InvalidFeatureRow(
                    f"{where}: {name}: expected {'a number' if kinds[name] else 'an int'}, got {value!r}")
            if kinds[name] and value != value:
                raise InvalidFeatureRow(f"{where}: {name}: NaN is not a feature value")
            columns[name].append(float(value) if kinds[name] else value)
    return pa.table(columns, schema=schema)
