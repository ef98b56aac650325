"""How Lore's Web API clients retry: slack-sdk's handlers, with every transient server error.

slack-sdk's server-error handler retries HTTP 500 and 503 only; a 502 or 504 from Slack's
gateways is as transient, so they are retried too. 429s wait for `Retry-After` first.
"""

from __future__ import annotations

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


class ServerErrorRetries(AsyncRetryHandler):
    """Retries a call Slack answered with a transient server error (5xx above)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in TRANSIENT_STATUSES


def retry_handlers(rate_limit_retries: int = 2) -> list[AsyncRetryHandler]:
    """Dropped connections and server errors twice; 429s `rate_limit_retries` times."""
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        ServerErrorRetries(max_retry_count=2),
    ]
