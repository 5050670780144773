"""The ground floor and the entry points: settings, errors, Kafka (``infra.kafka``), and on the
top floor the ``tandem`` command (``infra.cli``), the demo (``infra.demo``) and the simulator
(``infra.simulation``).

This package exports only the ground: the project's root error and the settings. ``Settings``
and ``load_settings`` are imported on first use (pydantic-settings), so importing an error
stays free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.errors import BrokerError, DeliveryError, ProvisioningError, SettingsError, TandemError
from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from infra.settings import Settings, load_settings

__all__ = [
    "BrokerError",
    "DeliveryError",
    "ProvisioningError",
    "Settings",
    "SettingsError",
    "TandemError",
    "load_settings",
]

#: Exports imported on first use, and their modules.
_LAZY = {"Settings": "infra.settings", "load_settings": "infra.settings"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
