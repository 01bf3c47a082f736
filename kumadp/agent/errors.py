"""The agent's error type: every failure the agent reports to its user derives from it.

Each message is one clear sentence naming what went wrong (and, where it helps, the input or
address involved), so the CLI can print it as ``Error: <message>`` without a traceback.
"""

from __future__ import annotations


class AgentError(Exception):
    """A failure of the agent that is reported to the user as one line (plus details)."""


class ConfigError(AgentError):
    """The agent's own configuration or the dataplane given to it is invalid."""
