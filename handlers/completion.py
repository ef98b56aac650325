"""Counts every delivery whose listener has finished, so "is Lore idle?" has an exact answer."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_bolt.listener.async_listener_completion_handler import (
    AsyncListenerCompletionHandler,
)
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from app.services import Services
from handlers.middleware import delivery_type


class CountHandled(AsyncListenerCompletionHandler):
    """Bolt's hook after each listener (errors included): one `event_handled` per delivery."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def handle(self, request: AsyncBoltRequest, response: BoltResponse | None) -> None:
        self._services.metrics.event_handled(delivery_type(request.body))


def register(app: AsyncApp, services: Services) -> None:
    app.listener_runner.listener_completion_handler = CountHandled(services)
