"""OAuth v2 for the emulator: the authorize page, `oauth.v2.access` and token rotation.

`/oauth/v2/authorize` approves at once (no person to click "Allow") and redirects back with a
code and the state. `oauth.v2.access` exchanges the code, checking the client id/secret and the
redirect URL; with token rotation on it issues `xoxe.xoxb-` access tokens that expire after
`token_expires_in` seconds and single-use `xoxe-` refresh tokens (`grant_type=refresh_token`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from emulator.api.base import ApiError, Args, text_arg
from emulator.config import EmulatorConfig
from emulator.workspace import Workspace


@dataclass
class _Grant:
    redirect_uri: str | None
    scope: str
    installer: str


class OAuthServer:
    """Codes, issued tokens and refresh tokens of the emulated app's installations."""

    def __init__(self, config: EmulatorConfig, workspace: Workspace) -> None:
        self.config = config
        self.workspace = workspace
        self.exchange_delay = 0.0
        self.refreshes = 0
        self.token_uses: list[tuple[str, str]] = []
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, float | None] = {}
        self._refresh_tokens: dict[str, str] = {}
        self.issued: list[str] = []
        """Every access and refresh token handed out so far (for tests looking for leaks)."""

    # the browser side

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """`GET /oauth/v2/authorize`: approve and redirect to the app with `code` and `state`."""
        query = request.query
        if query.get("client_id") != self.config.client_id:
            return web.Response(status=400, text="invalid_client_id")
        registered = self.config.oauth_redirect_url
        redirect_uri = query.get("redirect_uri") or None
        if redirect_uri is not None and registered and not redirect_uri.startswith(registered):
            return web.Response(status=400, text="bad_redirect_uri")
        target = redirect_uri or registered
        if not target:
            return web.Response(status=400, text="no redirect URL registered")
        code = f"{int(time.time())}.{secrets.token_hex(12)}"
        self._codes[code] = _Grant(redirect_uri, query.get("scope", ""), self._installer())
        params = {"code": code, "state": query.get("state", "")}
        separator = "&" if "?" in target else "?"
        raise web.HTTPFound(f"{target}{separator}{urlencode(params)}")

    def _installer(self) -> str:
        for user in self.workspace.users.values():
            if not user.is_bot:
                return user.id
        return "U0INSTALLER"

    # the Web API side

    def is_issued(self, token: str) -> bool:
        """Whether `token` is an access token this server issued (expired or not)."""
        return token in self._tokens

    def use(self, method: str, token: str) -> None:
        """Record a Web API call made with an issued token; `token_expired` once it expired."""
        expires_at = self._tokens[token]
        if expires_at is not None and time.time() >= expires_at:
            raise ApiError("token_expired")
        self.token_uses.append((method, token))

    def expire(self, token: str) -> None:
        """Make an issued access token expire now (for tests)."""
        self._tokens[token] = time.time()

    async def access(self, request: web.Request, args: Args) -> dict[str, Any]:
        """`oauth.v2.access`: exchange a code, or a refresh token with token rotation on."""
        self._check_client(request, args)
        grant_type = text_arg(args, "grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            return await self._refresh(text_arg(args, "refresh_token"))
        if grant_type != "authorization_code":
            raise ApiError("invalid_grant_type")
        grant = self._codes.pop(text_arg(args, "code") or "", None)
        if grant is None:
            raise ApiError("invalid_code")
        if (text_arg(args, "redirect_uri") or None) != grant.redirect_uri:
            raise ApiError("bad_redirect_uri")
        return {
            "ok": True,
            "app_id": self.config.app_id,
            "authed_user": {"id": grant.installer},
            "scope": grant.scope,
            "bot_user_id": self.config.bot_user_id,
            "team": {"id": self.config.team_id, "name": self.config.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            **self._issue(),
        }

    async def _refresh(self, refresh_token: str | None) -> dict[str, Any]:
        if not self.config.token_rotation:
            raise ApiError("token_rotation_not_enabled")
        self.refreshes += 1
        await asyncio.sleep(self.exchange_delay)
        if refresh_token is None or self._refresh_tokens.pop(refresh_token, None) is None:
            raise ApiError("invalid_refresh_token")
        return {
            "ok": True,
            "app_id": self.config.app_id,
            "scope": "",
            "bot_user_id": self.config.bot_user_id,
            "team": {"id": self.config.team_id, "name": self.config.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            **self._issue(),
        }

    def _issue(self) -> dict[str, Any]:
        """A new bot access token (and, with rotation, its refresh token and lifetime)."""
        if not self.config.token_rotation:
            token = f"xoxb-{secrets.token_hex(16)}"
            self._tokens[token] = None
            self.issued.append(token)
            return {"token_type": "bot", "access_token": token}
        token = f"xoxe.xoxb-1-{secrets.token_hex(16)}"
        refresh_token = f"xoxe-1-{secrets.token_hex(16)}"
        expires_in = self.config.token_expires_in
        self._tokens[token] = time.time() + expires_in
        self._refresh_tokens[refresh_token] = token
        self.issued += [token, refresh_token]
        return {
            "token_type": "bot",
            "access_token": token,
            "refresh_token": refresh_token,
            "expires_in": expires_in,
        }

    def _check_client(self, request: web.Request, args: Args) -> None:
        client_id = text_arg(args, "client_id")
        client_secret = text_arg(args, "client_secret")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise ApiError("invalid_client_id") from None
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.config.client_id:
            raise ApiError("invalid_client_id")
        if client_secret != self.config.client_secret:
            raise ApiError("bad_client_secret")
