"""Counts every listener begun and finished, so "is Lore idle?" has an exact answer.

Bolt runs a listener in a task of its own after acknowledging the event; its start and
completion handlers run first and last in that task (the latter also after an error).
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_bolt.listener.async_listener_completion_handler import (
    AsyncListenerCompletionHandler,
)
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from app.services import Services
from handlers.middleware import delivery_type


class CountStarted(AsyncListenerStartHandler):
    """One `listener_started` per listener run."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        self._services.metrics.listener_started()


class CountHandled(AsyncListenerCompletionHandler):
    """One `event_handled` per listener run, by delivery type."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        self._services.metrics.event_handled(delivery_type(request.body))


def register(app: AsyncApp, services: Services) -> None:
    app.listener_runner.listener_start_handler = CountStarted(services)
    app.listener_runner.listener_completion_handler = CountHandled(services)
