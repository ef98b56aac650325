"""Web API method handlers, grouped by family; `METHODS` maps a method name to its handler."""

from emulator.api.base import ApiContext, ApiError, Handler
from emulator.api.chat import METHODS as CHAT_METHODS
from emulator.api.conversations import METHODS as CONVERSATIONS_METHODS
from emulator.api.misc import METHODS as MISC_METHODS
from emulator.api.views import METHODS as VIEWS_METHODS

METHODS: dict[str, Handler] = {
    **CHAT_METHODS,
    **CONVERSATIONS_METHODS,
    **MISC_METHODS,
    **VIEWS_METHODS,
}

__all__ = ["METHODS", "ApiContext", "ApiError", "Handler"]
