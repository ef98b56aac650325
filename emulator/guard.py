"""Who may talk to the emulator: this machine by a loopback name, and its own page.

The control API lets its caller post as any user and read private channels, so a web page the
developer happens to visit must not reach it. Like Lore's JSON API, the emulator
- answers only requests whose Host is a loopback name (or the address it was told to bind),
  which keeps out pages on other sites that re-point their name at 127.0.0.1 (DNS rebinding);
- refuses any request a browser sent from another origin (its `Origin` header), since a form
  or `fetch` from another page may still reach 127.0.0.1;
- takes control POSTs (`/_emulator/...`) only as `application/json`, a type no HTML form can
  send and no cross-origin `fetch` can send without asking first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
CONTROL_PREFIX = "/_emulator/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refuse(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": error, "message": message}, status=status)


def allowed_hosts(bind_host: str) -> frozenset[str]:
    """The Host names the emulator answers to: loopback names, and the bind address if it is a
    specific one."""
    if bind_host in WILDCARD_HOSTS:
        return LOOPBACK_HOSTS
    return LOOPBACK_HOSTS | {bind_host}


def own_origins(url: str, hosts: frozenset[str]) -> frozenset[str]:
    """The origins the emulator's own page is shown under (`url` is its base URL)."""
    scheme, _, rest = url.partition("://")
    port = rest.rsplit(":", 1)[1] if ":" in rest else ""
    suffix = f":{port}" if port else ""
    return frozenset(f"{scheme}://{f'[{h}]' if ':' in h else h}{suffix}" for h in hosts)


def request_guard(bind_host: str, base_url: Callable[[], str]) -> Middleware:
    """An aiohttp middleware enforcing the rules above; `base_url` is the emulator's URL."""
    hosts = allowed_hosts(bind_host)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.url.host or "") not in hosts:
            return _refuse(
                403, "forbidden_host", "the emulator answers only to 127.0.0.1 and localhost"
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin not in own_origins(base_url(), hosts):
            return _refuse(403, "forbidden_origin", f"requests from {origin} are not accepted")
        if (
            request.method == "POST"
            and request.path.startswith(CONTROL_PREFIX)
            and request.content_type != "application/json"
        ):
            return _refuse(
                415, "unsupported_media_type", "send the body as Content-Type: application/json"
            )
        return await handler(request)

    return guard
