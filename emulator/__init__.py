"""A local stand-in for Slack (Web API, Events API, Socket Mode) for tests and local runs."""

from emulator.config import EmulatorConfig
from emulator.server import SlackEmulator
from emulator.workspace import EmulatorError

__all__ = ["EmulatorConfig", "EmulatorError", "SlackEmulator"]
