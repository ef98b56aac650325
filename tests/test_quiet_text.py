"""The quiet-text rule: mentions become names, broadcasts notify no one, links stay; streamed
text is never cut inside a mention."""

from __future__ import annotations

from handlers.quiet_text import JOINER, HeldTail, quiet, quiet_blocks


def test_mentions_become_names_and_broadcasts_go_silent() -> None:
    said = (
        "<!channel> ask <@U0BOB> or <@U0CAROL|carol>, <!subteam^S0OPS|@ops>, <!here|here>, "
        "<!everyone> and @here; see <#C0GENERAL> and <https://x.invalid|the doc> "
        "on <!date^1700000000^{date}|Nov 14>; mail bob@here.com"
    )
    assert quiet(said, {"U0BOB": "Bob Brown"}) == (
        f"@{JOINER}channel ask Bob Brown or carol, @{JOINER}ops, @{JOINER}here, "
        f"@{JOINER}everyone and @{JOINER}here; see <#C0GENERAL> and <https://x.invalid|the doc> "
        "on <!date^1700000000^{date}|Nov 14>; mail bob@here.com"
    )


def test_the_asker_may_be_addressed_and_strangers_stay_unnamed() -> None:
    assert quiet("Hi <@U0ALICE>, <@U0ZED> said so", allowed={"U0ALICE"}) == (
        "Hi <@U0ALICE>, someone said so"
    )


def test_streamed_text_is_cut_only_outside_mentions() -> None:
    tail = HeldTail()
    chunks = ["Ask <@U0CA", "ROL> or <!subteam^S1|@op", "s> now, @every", "one. ", "Bye @"]
    ready = [tail.push(chunk) for chunk in chunks] + [tail.flush()]
    assert ready == [
        "Ask ",
        "<@U0CAROL> or ",
        "<!subteam^S1|@ops> now, ",
        "@everyone. ",
        "Bye ",
        "@",
    ]
    assert "".join(quiet(part) for part in ready) == (
        f"Ask someone or @{JOINER}ops now, @{JOINER}everyone. Bye @"
    )


def test_views_are_quiet_but_inputs_keep_their_values() -> None:
    view = {
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "by <@U0BOB> <!here>"}},
            {"type": "section", "text": {"type": "plain_text", "text": "<!channel>"}},
            {"type": "input", "element": {"initial_value": "<!channel> stays editable"}},
        ]
    }
    quieted = quiet_blocks(view, {"U0BOB": "Bob Brown"})
    assert quieted["blocks"][0]["text"]["text"] == f"by Bob Brown @{JOINER}here"
    assert quieted["blocks"][1]["text"]["text"] == f"@{JOINER}channel"
    assert quieted["blocks"][2] == view["blocks"][2]
