"""People using the app's views: actions in the Home tab and submitting modals.

`home_action` sends the `block_actions` payload Slack sends for a button or menu of the user's
published Home view; `submit` sends a modal's `view_submission` and reads the app's answer
(`response_action: errors` keeps the modal open with the errors, otherwise it closes). Both
can be forged (an action absent from the view, a modal opened for someone else), as a
malicious client could, to test that the app checks who may do what.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from emulator.config import EmulatorConfig
from emulator.events import EventDelivery
from emulator.ids import new_trigger_id, new_view_id
from emulator.interactions import deliver_interaction
from emulator.socket_mode import SocketModeHub
from emulator.workspace import EmulatorError, Workspace

Payload = dict[str, Any]


def find_elements(view: Payload, action_id: str) -> list[tuple[str, Payload]]:
    """Block id and element of each element with `action_id` in a view (section accessories
    and actions blocks)."""
    found = []
    for block in view.get("blocks") or []:
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                found.append((str(block.get("block_id") or "emulated"), element))
    return found


def make_action(
    element: Payload,
    block_id: str,
    *,
    value: str | None,
    selected_option: str | None,
    selected_conversation: str | None,
) -> Payload:
    """The `actions[0]` Slack reports for using an element; EmulatorError if the choice is not
    one the element offers."""
    kind = element.get("type")
    action: Payload = {
        "type": kind,
        "action_id": element.get("action_id"),
        "block_id": block_id,
        "action_ts": f"{time.time():.6f}",
    }
    if kind == "button":
        if value is not None and element.get("value") != value:
            raise EmulatorError("no_such_button", f"{element.get('action_id')}={value}")
        action.update(value=element.get("value"), text=element.get("text"))
    elif kind == "static_select":
        option = next(
            (o for o in element.get("options") or [] if o.get("value") == selected_option), None
        )
        if option is None:
            raise EmulatorError("no_such_option", str(selected_option))
        action["selected_option"] = option
    elif kind == "conversations_select":
        if not selected_conversation:
            raise EmulatorError("no_conversation_selected")
        action["selected_conversation"] = selected_conversation
    else:
        raise EmulatorError("unsupported_element", str(kind))
    return action


def forged_action(
    action_id: str,
    *,
    value: str | None,
    selected_option: str | None,
    selected_conversation: str | None,
) -> Payload:
    """An action a client made up, with no element of the view behind it."""
    if selected_conversation is not None:
        element: Payload = {"type": "conversations_select", "action_id": action_id}
    elif selected_option is not None:
        option = {"text": {"type": "plain_text", "text": "forged"}, "value": selected_option}
        element = {"type": "static_select", "action_id": action_id, "options": [option]}
    else:
        element = {"type": "button", "action_id": action_id, "value": value or ""}
    return make_action(
        element,
        "forged",
        value=value,
        selected_option=selected_option,
        selected_conversation=selected_conversation,
    )


def with_inputs(view: Payload, values: dict[str, str]) -> Payload:
    """A copy of a modal whose `state.values` holds each input's text: `values[block_id]`,
    else the input's initial value."""
    submitted = copy.deepcopy(view)
    state: dict[str, Payload] = {}
    for block in submitted.get("blocks") or []:
        element = block.get("element") or {}
        if block.get("type") != "input" or element.get("type") != "plain_text_input":
            continue
        block_id = str(block.get("block_id"))
        text = values.get(block_id, element.get("initial_value"))
        state[block_id] = {
            str(element.get("action_id")): {"type": "plain_text_input", "value": text or None}
        }
    submitted["state"] = {"values": state}
    return submitted


class ViewInteractions:
    """Sends Home-tab actions and modal submissions to the app, over HTTP or Socket Mode."""

    def __init__(
        self,
        config: EmulatorConfig,
        workspace: Workspace,
        delivery: EventDelivery,
        socket: SocketModeHub,
    ) -> None:
        self.config = config
        self.workspace = workspace
        self.delivery = delivery
        self.socket = socket

    def modals(self, user_id: str | None = None) -> list[Payload]:
        """Open modals (of one user), oldest first."""
        return [
            m["view"]
            for m in self.workspace.modals.values()
            if user_id is None or m.get("user") == user_id
        ]

    async def home_action(
        self,
        user_id: str,
        action_id: str,
        *,
        value: str | None = None,
        selected_option: str | None = None,
        selected_conversation: str | None = None,
        forge: bool = False,
    ) -> int | None:
        """`user_id` uses element `action_id` of their Home tab; the app's HTTP status.

        forge: send it even though the user's Home shows no such element.
        """
        user = self.workspace.user(user_id)
        view = self.workspace.views.get(user.id)
        choice = {
            "value": value,
            "selected_option": selected_option,
            "selected_conversation": selected_conversation,
        }
        action: Payload | None = None
        for block_id, element in find_elements(view, action_id) if view else []:
            try:
                action = make_action(element, block_id, **choice)
                break
            except EmulatorError:
                continue
        if action is None and forge:
            action = forged_action(action_id, **choice)
        if action is None:
            raise EmulatorError("no_such_action", f"{action_id} is not in {user.id}'s Home tab")
        home = copy.deepcopy(view) if view else {"id": new_view_id(), "type": "home", "blocks": []}
        trigger_id = new_trigger_id()
        self.workspace.trigger_users[trigger_id] = user.id
        payload = {
            **self._envelope("block_actions", user.id),
            "container": {"type": "view", "view_id": home["id"]},
            "trigger_id": trigger_id,
            "view": home,
            "actions": [action],
            "is_enterprise_install": False,
        }
        status, _ = await deliver_interaction(self.config, self.delivery, self.socket, payload)
        return status

    async def submit(
        self,
        user_id: str,
        view_id: str,
        values: dict[str, str] | None = None,
        *,
        view: Payload | None = None,
    ) -> Payload:
        """`user_id` submits open modal `view_id` with `values` (input block id -> text).

        `view`: submit this view instead (forged: e.g. another user's modal). Returns
        {"status", "response", "closed"}: the app's HTTP status, its JSON answer (e.g.
        `{"response_action": "errors", ...}`) and whether the modal closed.
        """
        user = self.workspace.user(user_id)
        opened = self.workspace.modals.get(view_id)
        if view is None:
            if opened is None:
                raise EmulatorError("not_found", f"no open modal {view_id}")
            if opened.get("user") not in (None, user.id):
                raise EmulatorError("not_allowed", f"modal {view_id} was opened for someone else")
            view = opened["view"]
        payload = {
            **self._envelope("view_submission", user.id),
            "trigger_id": new_trigger_id(),
            "view": with_inputs(view, values or {}),
            "response_urls": [],
            "is_enterprise_install": False,
        }
        status, response = await deliver_interaction(
            self.config, self.delivery, self.socket, payload
        )
        action = (response or {}).get("response_action")
        closed = status == 200 and action not in ("errors", "update", "push")
        if closed:
            self.workspace.modals.pop(view_id, None)
        return {"status": status, "response": response, "closed": closed}

    def _envelope(self, kind: str, user_id: str) -> Payload:
        """The fields every interaction payload of `kind` from `user_id` starts with."""
        user = self.workspace.user(user_id)
        return {
            "type": kind,
            "token": self.config.verification_token,
            "api_app_id": self.config.app_id,
            "team": {"id": self.config.team_id, "domain": self.config.team_domain},
            "user": {
                "id": user.id,
                "username": user.name,
                "name": user.name,
                "team_id": self.config.team_id,
            },
        }
