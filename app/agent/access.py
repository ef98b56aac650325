"""The one access rule: who reads a result, what it may draw on, which memory it reads and writes.

An `Access` is built once per turn, `/recall`, App Home view and API call (`Access.for_turn`,
`for_recall`, `for_home`, `for_operator`) from facts the Slack edge looks up (the asker, where
the result is shown, who else reads there). Every search, memory read and memory edit takes it,
and the stores enforce what it hands them: the archive an `Audience`, memory blocks a
`MemoryScope`. Nothing else decides.

| result shown in           | read by  | draws on                  | memory read    | written to   |
|---------------------------|----------|---------------------------|----------------|--------------|
| public channel            | channel  | public channels + it      | persona, org   | org (1)      |
| private channel, group DM | channel  | public channels + it      | persona, org,  | own (2)      |
|                           |          |                           | own            |              |
| channel w/ outsiders (3)  | channel  | that channel only         | persona, own   | own (2)      |
| DM with Lore              | asker    | public + it + the asker's | persona, org,  | own (2)      |
|                           |          | private conversations (4) | own            |              |
| `/recall` (ephemeral)     | asker    | as a DM, + where it ran   | -              | -            |
| App Home                  | viewer   | rows: public channels (5) | persona, org   | admins only  |
| any, asked by an outsider | as above | only the conversations    | never org      | as above     |
|                           |          | they are members of       |                |              |
| JSON API, CLI             | operator | everything                | every block    | every block  |
| reflection, public (6)    | channel  | public channels           | persona, org   | org          |
| reflection, private (6)   | channel  | public channels + it      | persona, org,  | own          |
|                           |          |                           | own            |              |
| reflection, w/ outsiders  | channel  | that channel only         | persona, own   | own          |

"channel": everyone who can read the channel; "asker": the asker alone; "own": the
conversation's own `private:<channel>` block.
(1) and `persona`, for admins. (2) whatever label is named; naming another conversation's
`private:` block is refused. (3) outsiders: guests (`is_restricted`, `is_ultra_restricted`) and
members of another organisation (a Slack Connect channel, `is_ext_shared`, or a member whose team
is not the workspace's); the channel's own block replaces `org`, and a thin answer says that
asking Lore in a DM may find more. (4) private channels, group DMs and DMs the asker and Lore are
both in. (5) admins: every row, private channels, DMs and group DMs too. (6) the background
reflection over quiet threads: of public channels together, or of one private conversation
alone, and of a conversation outsiders can read (3) alone and as they would read it; it is
never an admin (no `persona` edit, no rewrite of a block, no cut of most of it).

Every memory edit also follows these rules:
- naming another conversation's `private:` block is refused, and its text is never shown;
- `memory_rethink` of `org` or `persona`, any edit of `persona`, and an edit that removes more
  than half of a block's lines need the asker to be a workspace admin or owner;
- at most `MAX_EDITS_PER_TURN` edits per turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from memory.audience import PUBLIC, Audience
from memory.blocks import DEFAULT_BLOCKS, SCOPED_PREFIX, MemoryScope, scoped_label
from memory.edits import Edit, EditError, Rethink

PRIVATE_TYPES = frozenset({"group", "im", "mpim"})
MAX_EDITS_PER_TURN = 5
ADMINS_ONLY = "only a workspace admin or owner can ask for that"
THIN_RESULTS = 3
"""An answer drawn on fewer archived messages than this is thin."""
ASK_IN_A_DM = (
    "_People outside the organisation can read this channel, so I looked only at this "
    "channel. Ask me in a DM and I may find more._"
)


class AccessError(EditError):
    """A read or an edit the access rule refuses; the message says why (to the model or a
    person)."""


class Readers(StrEnum):
    """Who will read a result."""

    ASKER = "asker"  # the asker alone: a DM with Lore, an ephemeral `/recall`, the App Home
    CHANNEL = "channel"  # everyone who can read the channel it is posted in
    OPERATOR = "operator"  # whoever runs an operator's tool (JSON API, CLI)


@dataclass(frozen=True)
class Person:
    """The asker (or viewer), as Slack describes them."""

    user_id: str
    admin: bool = False
    outsider: bool = False
    """A guest (`is_restricted`, `is_ultra_restricted`) or a member of another organisation."""


@dataclass(frozen=True)
class Venue:
    """The conversation a result is posted in."""

    channel_id: str
    channel_type: str
    outsiders: bool = False
    """It has a guest or a member of another organisation, or it is shared with another one."""


@dataclass(frozen=True)
class Access:
    """What one request may see and change; see the module docstring for the rule."""

    team_id: str
    readers: Readers
    audience: Audience
    memory: MemoryScope
    admin: bool = False
    asker: str | None = None
    own_block: str | None = None
    """The conversation's own `private:<channel>` block, where all its memory edits land."""
    channel_only: bool = False
    """Outsiders read the result: it draws on this channel only, never on `org`."""
    asker_outsider: bool = False

    @classmethod
    def for_turn(
        cls, team_id: str, asker: Person, venue: Venue, memberships: frozenset[str]
    ) -> Access:
        """An answer posted in `venue`. `memberships`: the asker's conversations that Lore is in
        (private ones for members of the organisation, every one for outsiders); they count
        only where the asker alone reads the answer (a DM)."""
        readers = Readers.ASKER if venue.channel_type == "im" else Readers.CHANNEL
        channel_only = readers is Readers.CHANNEL and (venue.outsiders or asker.outsider)
        here = frozenset({venue.channel_id})
        if readers is Readers.ASKER:
            audience = Audience(here | memberships, public=not asker.outsider)
        else:
            audience = Audience(here, public=not channel_only)
        private_here = venue.channel_type in PRIVATE_TYPES or channel_only
        own = scoped_label(venue.channel_id) if private_here else None
        shared = _shared_blocks(readable_org=not (channel_only or asker.outsider))
        if own is not None:
            memory = MemoryScope(shared | {own}, frozenset({own}), may_cut=asker.admin)
        else:
            writable = frozenset({"org", "persona"} if asker.admin else {"org"})
            memory = MemoryScope(shared, writable & shared, may_cut=asker.admin)
        return cls(
            team_id,
            readers,
            audience,
            memory,
            admin=asker.admin,
            asker=asker.user_id,
            own_block=own,
            channel_only=channel_only,
            asker_outsider=asker.outsider,
        )

    @classmethod
    def for_recall(
        cls, team_id: str, asker: Person, channel_id: str, memberships: frozenset[str]
    ) -> Access:
        """An ephemeral `/recall` answer, seen by the asker alone; it reads no memory."""
        audience = Audience(frozenset({channel_id}) | memberships, public=not asker.outsider)
        return cls(
            team_id,
            Readers.ASKER,
            audience,
            MemoryScope(frozenset()),
            admin=asker.admin,
            asker=asker.user_id,
            asker_outsider=asker.outsider,
        )

    @classmethod
    def for_home(cls, team_id: str, viewer: Person, memberships: frozenset[str]) -> Access:
        """The App Home of `viewer`: guests and other organisations' members see nothing of
        `org`; only admins change blocks or see rows about private conversations."""
        readable = _shared_blocks(readable_org=not viewer.outsider)
        writable = readable if viewer.admin else frozenset()
        return cls(
            team_id,
            Readers.ASKER,
            Audience(memberships, public=not viewer.outsider),
            MemoryScope(readable, writable, may_cut=viewer.admin),
            admin=viewer.admin,
            asker=viewer.user_id,
            asker_outsider=viewer.outsider,
        )

    @classmethod
    def for_operator(cls, team_id: str) -> Access:
        """An operator's tool (the JSON API with the admin token, the CLI): everything."""
        return cls(
            team_id, Readers.OPERATOR, Audience.everyone(), MemoryScope.everything(), admin=True
        )

    @classmethod
    def for_reflection(
        cls, team_id: str, channel_id: str | None, *, outsiders: bool = False
    ) -> Access:
        """Reflection over public channels' threads (`channel_id` None) or over one private
        conversation's, whose notes and memory edits stay in that conversation. A conversation
        with `outsiders` is reflected as they read it: that channel only, never `org`."""
        shared = _shared_blocks(readable_org=not outsiders)
        if channel_id is None:
            if outsiders:
                raise ValueError("a conversation with outsiders is reflected on its own")
            return cls(
                team_id,
                Readers.CHANNEL,
                Audience(frozenset(), public=True),
                MemoryScope(shared, frozenset({"org"})),
            )
        own = scoped_label(channel_id)
        return cls(
            team_id,
            Readers.CHANNEL,
            Audience(frozenset({channel_id}), public=not outsiders),
            MemoryScope(shared | {own}, frozenset({own})),
            own_block=own,
            channel_only=outsiders,
        )

    @property
    def reads_org(self) -> bool:
        return self.memory.reads("org")

    @property
    def suggests_dm(self) -> bool:
        """A thin answer here may say that asking Lore in a DM can find more."""
        return self.channel_only and not self.asker_outsider

    def edit_target(self, label: str, edit: Edit) -> str:
        """The block an edit of `label` asked for here really changes; AccessError if refused.

        In a conversation with its own block every edit lands there, whatever label is named,
        except another conversation's block, which is refused.
        """
        if self.own_block is not None:
            if label.startswith(SCOPED_PREFIX) and label != self.own_block:
                raise AccessError(
                    f"{label!r} is another conversation's private memory, which cannot be read "
                    f"or changed from here; edits made here go to {self.own_block!r}"
                )
            target = self.own_block
        elif label.startswith(SCOPED_PREFIX):
            raise AccessError(
                f"{label!r} is a conversation's private memory, which cannot be read or changed "
                "from here; use the org block"
            )
        elif label not in DEFAULT_BLOCKS:
            raise AccessError(f"there is no memory block named {label!r}; use the org block")
        else:
            target = label
            if not self.admin and label == "persona":
                raise AccessError(f"persona is Lore's own description: {ADMINS_ONLY}")
            if not self.admin and isinstance(edit, Rethink):
                raise AccessError(
                    f"rewriting the whole {label} block: {ADMINS_ONLY}; "
                    "use memory_insert or memory_replace to change a line"
                )
        if not self.memory.writes(target):
            raise AccessError(f"the memory block {target!r} cannot be changed from here")
        return target

    def shows_channel_row(self, channel_id: str, channel_type: str) -> bool:
        """Whether a row about a channel (backfill, exclusions) may be shown: admins see every
        row; others only public channels they may see."""
        if self.admin:
            return True
        return channel_type == PUBLIC and self.audience.allows(channel_id, channel_type)


def _shared_blocks(*, readable_org: bool) -> frozenset[str]:
    return frozenset({"persona", "org"} if readable_org else {"persona"})
