"""Feast's file registry, replaced whole instead of rewritten in place.

Feast's ``FileRegistryStore`` truncates the registry file and writes the new one into it. Every
tandem process that opens the feature store applies the same definitions at start (the features
worker's writer, serving, the learner), so a process reading the registry while another applies
could parse an empty or torn file: serving's start failed with ``FeatureViewNotFoundException``
in a demo whose features worker was applying at that moment. Here the registry is written to a
temporary file beside it and renamed over it, so a reader sees the old registry or the new one,
whole. Concurrent applies of the same definitions may each write; each write holds them all.

Feast loads this class by name (``RegistryConfig.registry_store_type``), so importing Feast here
costs nothing until a store is opened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        path = self._filepath
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(registry_proto.SerializeToString())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
