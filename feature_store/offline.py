"""The offline side: feature rows appended as Parquet partitioned by day, and point-in-time joins.

Layout: ``<root>/date=YYYY-MM-DD/part-<uuid>.parquet``, one file per written batch and day
(the day of the row's event time, UTC). Files are written to a temporary name and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from feature_store.definitions import JOIN_KEY, TIMESTAMP

TS_TYPE = pa.timestamp("us", tz="UTC")


def arrow_schema(defaults: Mapping[str, int | float]) -> pa.Schema:
    return pa.schema(
        [pa.field(JOIN_KEY, pa.string(), nullable=False), pa.field(TIMESTAMP, TS_TYPE, nullable=False)]
        + [pa.field(name, pa.float64() if isinstance(v, float) else pa.int64()) for name, v in defaults.items()]
    )


def append(root: Path, table: pa.Table) -> list[Path]:
    """Write ``table`` (schema of ``arrow_schema``) as one new part per day; returns the files."""
    if table.num_rows == 0:
        return []
    days = pc.strftime(table[TIMESTAMP], format="%Y-%m-%d")
    written = []
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, day))
        directory = root / f"date={day}"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = directory / f".{name}.tmp"
        pq.write_table(part, tmp)
        os.replace(tmp, directory / name)
        written.append(directory / name)
    return written


def read(root: Path, schema: pa.Schema, start: pd.Timestamp | None = None,
         end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Rows with ``start <= event_timestamp <= end``, reading only the days that can hold them."""
    if not root.exists():
        return schema.empty_table().to_pandas()
    dataset = ds.dataset(root, format="parquet", schema=schema.append(pa.field("date", pa.string())),
                         partitioning="hive", exclude_invalid_files=True)
    condition = None
    if start is not None:
        condition = ds.field("date") >= start.strftime("%Y-%m-%d")
        condition &= ds.field(TIMESTAMP) >= pa.scalar(start.to_pydatetime(), TS_TYPE)
    if end is not None:
        upper = (ds.field("date") <= end.strftime("%Y-%m-%d")) & (
            ds.field(TIMESTAMP) <= pa.scalar(end.to_pydatetime(), TS_TYPE))
        condition = upper if condition is None else condition & upper
    return dataset.to_table(columns=schema.names, filter=condition).to_pandas()


def point_in_time(entity_df: pd.DataFrame, rows: pd.DataFrame, *, ttl: timedelta) -> pd.DataFrame:
    """For each entity row, the user's newest feature row at or before its event_timestamp and
    no older than ``ttl``; features are NaN where there is none. Entity rows keep their order."""
    if JOIN_KEY not in entity_df or TIMESTAMP not in entity_df:
        raise ValueError(f"entity_df: needs the columns {JOIN_KEY!r} and {TIMESTAMP!r}")
    left = entity_df.copy()
    left["__order"] = range(len(left))
    left[TIMESTAMP] = pd.to_datetime(left[TIMESTAMP], utc=True).astype("datetime64[us, UTC]")
    right = rows.rename(columns={TIMESTAMP: "__feature_ts"})
    right["__feature_ts"] = right["__feature_ts"].astype("datetime64[us, UTC]")
    right = right.sort_values("__feature_ts", kind="stable").drop_duplicates(
        [JOIN_KEY, "__feature_ts"], keep="last")
    joined = pd.merge_asof(
        left.sort_values(TIMESTAMP, kind="stable"), right,
        left_on=TIMESTAMP, right_on="__feature_ts", by=JOIN_KEY,
        direction="backward", allow_exact_matches=True, tolerance=pd.Timedelta(ttl),
    )
    return joined.sort_values("__order").drop(columns=["__order", "__feature_ts"]).reset_index(drop=True)
