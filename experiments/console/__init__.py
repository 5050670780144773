"""The experiment owners' console: lifecycle, automatic stop, decisions, a JSON API and web pages.

Its own process in the experimentation stack (``tandem console``), never imported by serving.
``Console`` holds the operations as plain functions over ``ConsoleState`` (fed by
``TopicFollower``) and a ``Writer``; ``build_app`` is the aiohttp adapter; ``open_console`` and
``serve_console`` run it against a broker. See docs/console.md.
"""

from experiments.console.app import build_app
from experiments.console.errors import BadBody
from experiments.console.openapi import document
from experiments.console.run import DEFAULT_HOST, DEFAULT_PORT, KafkaWriter, RunningConsole, open_console, serve_console
from experiments.console.service import Console, LiftPoint, Writer
from experiments.console.state import ConsoleState, TopicFollower

__all__ = [
    "DEFAULT_HOST", "DEFAULT_PORT", "BadBody", "Console", "ConsoleState", "KafkaWriter", "LiftPoint",
    "RunningConsole", "TopicFollower", "Writer", "build_app", "document", "open_console", "serve_console",
]
