"""GET /metrics: the Prometheus exposition of one Lore, and who may read it.

- local mode (no Slack credentials): clients on the loopback interface, without a token;
- otherwise only with `Authorization: Bearer $LORE_METRICS_TOKEN` (Prometheus' `authorization`
  scrape setting). A scrape token of its own, not LORE_ADMIN_TOKEN: whoever holds it sees counts
  and workspace ids, not memory or messages. With no LORE_METRICS_TOKEN set outside local mode
  `/metrics` answers 404, as the JSON API does without LORE_ADMIN_TOKEN.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from app.api import bearer_token, is_loopback
from app.metrics import LoreMetrics


@dataclass(frozen=True)
class MetricsEndpoint:
    """The `/metrics` handler over one Lore's metrics."""

    metrics: LoreMetrics
    local_mode: bool
    token: str | None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body, content_type = await self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _refusal(self, request: web.Request) -> web.Response | None:
        given = bearer_token(request)
        if self.token is not None and given is not None:
            if hmac.compare_digest(given.encode(), self.token.encode()):
                return None
        if self.local_mode and is_loopback(request):
            return None
        if self.token is None:
            if not self.local_mode:
                return web.json_response({"ok": False, "error": "not_found"}, status=404)
            return web.json_response(
                {"ok": False, "error": "forbidden", "message": "set LORE_METRICS_TOKEN"},
                status=403,
            )
        challenge = {"WWW-Authenticate": 'Bearer realm="lore-metrics"'}
        error = "not_authed" if given is None else "invalid_auth"
        return web.json_response({"ok": False, "error": error}, status=401, headers=challenge)
