"""Signed Events API requests, byte for byte what Slack sends, for benchmarks."""

from __future__ import annotations

import json
import time
import uuid

from slack_sdk.signature import SignatureVerifier


def message_event_body(team_id: str, channel: str, user: str, text: str, ts: str) -> bytes:
    body = {
        "token": "unused",
        "team_id": team_id,
        "api_app_id": "A0LORE",
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:12].upper()}",
        "event_time": int(float(ts)),
        "event": {
            "type": "message",
            "channel": channel,
            "channel_type": "channel",
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "team": team_id,
        },
        "authorizations": [{"team_id": team_id, "user_id": "U0LORE", "is_bot": True}],
    }
    return json.dumps(body).encode()


def signed_headers(signing_secret: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
