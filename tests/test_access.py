"""The access rule, row by row of its table (app/agent/access.py): who reads, what an answer
may draw on, which memory a conversation reads and writes. End-to-end tests of each rule are in
tests/test_e2e_access.py."""

from __future__ import annotations

import pytest

from app.agent.access import Access, AccessError, Person, Readers, Venue
from memory.edits import Insert, Rethink

TEAM = "T1"
MEMBER = Person("U1")
ADMIN = Person("U2", admin=True)
GUEST = Person("U3", outsider=True)
MINE = frozenset({"G7", "D1"})


def turn(venue: Venue, asker: Person = MEMBER, memberships: frozenset[str] = MINE) -> Access:
    return Access.for_turn(TEAM, asker, venue, memberships)


def test_public_channel_answer_draws_on_public_channels_and_writes_org() -> None:
    access = turn(Venue("C1", "channel"))
    assert access.readers is Readers.CHANNEL
    assert access.audience.public and access.audience.channels == {"C1"}  # not the asker's G7
    assert access.memory.readable == {"persona", "org"}
    assert access.edit_target("org", Insert("x")) == "org"


@pytest.mark.parametrize(("channel", "kind"), [("G7", "group"), ("G8", "mpim"), ("D1", "im")])
def test_private_conversations_read_and_write_their_own_block(channel: str, kind: str) -> None:
    access = turn(Venue(channel, kind))
    own = f"private:{channel}"
    assert access.memory.readable == {"persona", "org", own}
    assert access.memory.writable == {own}
    assert access.edit_target("org", Insert("x")) == own
    assert access.edit_target("persona", Rethink("x")) == own
    with pytest.raises(AccessError, match="another conversation"):
        access.edit_target("private:C9", Insert("x"))


def test_a_dm_is_read_by_the_asker_alone_and_draws_on_their_conversations() -> None:
    access = turn(Venue("D1", "im"))
    assert access.readers is Readers.ASKER
    assert access.audience.public and access.audience.channels == MINE


def test_channel_with_outsiders_draws_on_itself_only_and_never_on_org() -> None:
    access = turn(Venue("C5", "channel", outsiders=True))
    assert access.channel_only and access.suggests_dm
    assert not access.audience.public and access.audience.channels == {"C5"}
    assert access.memory.readable == {"persona", "private:C5"}
    assert access.edit_target("org", Insert("x")) == "private:C5"  # never org


def test_outsider_asker_sees_only_their_conversations_and_no_org() -> None:
    in_dm = turn(Venue("D3", "im"), GUEST, frozenset({"C5"}))
    assert not in_dm.audience.public and in_dm.audience.channels == {"D3", "C5"}
    assert not in_dm.reads_org
    in_channel = turn(Venue("C1", "channel"), GUEST)
    assert in_channel.channel_only and not in_channel.suggests_dm  # a DM would not show more
    recall = Access.for_recall(TEAM, GUEST, "C5", frozenset({"C5"}))
    assert not recall.audience.public and recall.audience.channels == {"C5"}
    assert not Access.for_home(TEAM, GUEST, frozenset()).reads_org


def test_shared_blocks_are_rewritten_only_by_admins() -> None:
    member, admin = turn(Venue("C1", "channel")), turn(Venue("C1", "channel"), ADMIN)
    with pytest.raises(AccessError, match="admin"):
        member.edit_target("org", Rethink("x"))
    with pytest.raises(AccessError, match="admin"):
        member.edit_target("persona", Insert("x"))
    assert not member.memory.may_cut
    assert admin.edit_target("org", Rethink("x")) == "org"
    assert admin.edit_target("persona", Insert("x")) == "persona"
    assert admin.memory.may_cut


def test_public_channels_name_no_private_block_and_no_unknown_one() -> None:
    access = turn(Venue("C1", "channel"), ADMIN)
    with pytest.raises(AccessError, match="private memory"):
        access.edit_target("private:G7", Insert("x"))
    with pytest.raises(AccessError, match="no memory block"):
        access.edit_target("secrets", Insert("x"))


def test_recall_reads_no_memory_and_app_home_rows_follow_the_viewer() -> None:
    recall = Access.for_recall(TEAM, MEMBER, "C1", MINE)
    assert recall.audience.public and recall.audience.channels == {"C1", *MINE}
    assert not recall.memory.readable
    member_home = Access.for_home(TEAM, MEMBER, frozenset())
    assert member_home.shows_channel_row("C1", "channel")
    assert not member_home.shows_channel_row("G7", "group")
    assert not member_home.shows_channel_row("D1", "im")
    assert not member_home.memory.writable
    admin_home = Access.for_home(TEAM, ADMIN, frozenset())
    assert admin_home.shows_channel_row("D1", "im")
    guest_home = Access.for_home(TEAM, GUEST, frozenset({"C5"}))
    assert guest_home.shows_channel_row("C5", "channel")
    assert not guest_home.shows_channel_row("C1", "channel")


def test_operators_see_everything() -> None:
    access = Access.for_operator(TEAM)
    assert access.audience.everything and access.memory.every_block and access.admin


def test_reflection_of_public_channels_reads_and_writes_org() -> None:
    access = Access.for_reflection(TEAM, None)
    assert access.audience.public and not access.audience.channels
    assert access.memory.readable == {"persona", "org"}
    assert access.edit_target("org", Insert("x")) == "org"


def test_reflection_of_a_private_conversation_reads_org_and_writes_its_own_block() -> None:
    access = Access.for_reflection(TEAM, "G7")
    assert access.audience.public and access.audience.channels == {"G7"}
    assert access.memory.readable == {"persona", "org", "private:G7"}
    assert access.edit_target("org", Insert("x")) == "private:G7"


@pytest.mark.parametrize("channel", ["C5", "G7"])
def test_reflection_of_a_conversation_outsiders_read_never_touches_org(channel: str) -> None:
    access = Access.for_reflection(TEAM, channel, outsiders=True)
    own = f"private:{channel}"
    assert not access.audience.public and access.audience.channels == {channel}
    assert access.memory.readable == {"persona", own}
    assert access.memory.writable == {own}
    assert access.edit_target("org", Insert("x")) == own
    with pytest.raises(ValueError, match="on its own"):
        Access.for_reflection(TEAM, None, outsiders=True)
