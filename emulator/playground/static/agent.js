// Lore's side of the playground, from Lore's JSON API: its mode, memory blocks with their
// version history, notes with the messages they were learned from, conversations, and a search
// box over the archive. Memory, notes and conversations update through server-sent events.

import { follow, getJSON } from "./net.js";
import { el, relativeElement, renderText, timeElement, tsDate } from "./render.js";

const OPERATIONS = {
  create: "created",
  insert: "insert",
  replace: "replace",
  rethink: "rewrite",
  forget: "forget",
};

export class AgentView {
  constructor(config, chat, announce) {
    this.api = config.agent_api;
    this.team = config.team.id;
    this.chat = chat;
    this.announce = announce;
    this.versions = new Map(); // label -> version shown
    this.notesShown = null; // ids of the notes shown, once the first list arrived
    const $ = (id) => document.getElementById(id);
    this.dom = {
      mode: $("mode"),
      modeNote: $("mode-note"),
      summary: $("agent-summary"),
      memory: $("memory"),
      notes: $("notes"),
      conversations: $("conversations"),
      conversationsCount: $("conversations-count"),
      searchForm: $("search-form"),
      searchInput: $("search-q"),
      searchResults: $("search-results"),
      searchStatus: $("search-status"),
    };
    this.counts = { messages: null, conversations: null };
  }

  teamUrl(path) {
    return `${this.api}/teams/${encodeURIComponent(this.team)}${path}`;
  }

  async start() {
    if (!this.api) {
      this.dom.mode.textContent = "Emulator only";
      this.dom.summary.textContent =
        "Lore's view is not available: this emulator was started without Lore.";
      this.dom.searchForm.hidden = true;
      return;
    }
    this.dom.searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.search(this.dom.searchInput.value);
    });
    try {
      const info = await getJSON(`${this.api}/info`);
      this.showMode(info);
    } catch (error) {
      this.dom.mode.textContent = "Lore is not answering";
      this.dom.summary.textContent = `Lore's API did not answer: ${error.message}`;
    }
    follow(
      this.teamUrl("/events"),
      {
        memory: (data) => this.renderMemory(data),
        notes: (data) => this.renderNotes(data),
        conversations: (data) => this.renderConversations(data),
        archive: (data) => {
          this.counts.messages = data.messages;
          this.renderSummary();
        },
      },
      {
        onDown: () => {
          this.dom.summary.textContent = "Reconnecting to Lore…";
        },
      },
    );
  }

  showMode(info) {
    const mode = this.dom.mode;
    mode.classList.remove("mode-agent", "mode-retrieval");
    const note = this.dom.modeNote;
    if (info.mode === "agent") {
      mode.classList.add("mode-agent");
      mode.replaceChildren(el("strong", {}, "Agent mode"), ` · ${info.model}`);
      note.hidden = true;
    } else {
      mode.classList.add("mode-retrieval");
      mode.replaceChildren(el("strong", {}, "Retrieval-only mode"), " · no ANTHROPIC_API_KEY");
      note.replaceChildren(
        el("strong", {}, "Retrieval-only mode: "),
        "Lore answers with the best matching messages and their links instead of writing an ",
        "answer. Teach it with “@Lore remember: …”, untaught with “@Lore forget: …”. ",
        "Set ANTHROPIC_API_KEY and restart for the full agent.",
      );
      note.hidden = false;
    }
  }

  renderSummary() {
    const { messages, conversations } = this.counts;
    const parts = [];
    if (messages !== null) parts.push(`${messages} messages archived`);
    if (conversations !== null) {
      parts.push(`${conversations} conversation${conversations === 1 ? "" : "s"}`);
    }
    this.dom.summary.textContent = parts.join(" · ");
  }

  // memory

  renderMemory({ blocks }) {
    const container = this.dom.memory;
    const seen = new Set();
    for (const block of blocks) {
      seen.add(block.label);
      const id = `block-${block.label.replace(/[^\w-]/g, "_")}`;
      let article = document.getElementById(id);
      const before = this.versions.get(block.label);
      const changed = before !== undefined && before !== block.version;
      this.versions.set(block.label, block.version);
      if (!article) {
        article = el("article", { class: "block", id, "aria-labelledby": `${id}-h` });
        const history = el(
          "details",
          { class: "history", dataset: { label: block.label } },
          el("summary", {}, "History"),
          el("ol", { class: "versions" }),
        );
        history.addEventListener("toggle", () => {
          if (history.open) this.loadVersions(block.label, history);
        });
        article.append(el("header"), el("div", { class: "value" }), history);
        container.append(article);
      }
      this.fillBlock(article, id, block);
      if (changed) {
        article.classList.remove("updated");
        void article.offsetWidth; // restart the highlight animation
        article.classList.add("updated");
        this.announce(`Lore's memory block ${block.label} changed: now version ${block.version}.`);
        const history = article.querySelector("details");
        if (history.open) this.loadVersions(block.label, history);
      }
    }
    for (const article of [...container.children]) {
      const label = article.querySelector("details")?.dataset.label;
      if (label && !seen.has(label)) article.remove();
    }
  }

  fillBlock(article, id, block) {
    const header = article.querySelector("header");
    const facts = [];
    if (block.version) facts.push(`v${block.version}`);
    else facts.push("not written yet");
    if (block.char_limit) facts.push(`${block.chars}/${block.char_limit} characters`);
    header.replaceChildren(
      el(
        "h4",
        { id: `${id}-h` },
        block.label,
        block.scoped ? el("span", { class: "scoped" }, " (private scope)") : null,
      ),
      el(
        "p",
        { class: "block-meta" },
        facts.join(" · "),
        block.updated_at ? [" · changed ", relativeElement(new Date(block.updated_at))] : null,
        block.conversation ? [" in ", this.conversationLink(block.conversation)] : null,
        block.user_id ? [" by ", this.chat.realName(block.user_id)] : null,
      ),
    );
    const value = article.querySelector(".value");
    value.replaceChildren(
      block.value
        ? el(
            "pre",
            { class: "block-value", tabindex: "0", "aria-label": `${block.label} block` },
            block.value,
          )
        : el("p", { class: "empty" }, "(empty)"),
    );
    article.querySelector("summary").textContent =
      `History (${block.versions} version${block.versions === 1 ? "" : "s"})`;
  }

  async loadVersions(label, details) {
    const list = details.querySelector("ol");
    try {
      const data = await getJSON(
        this.teamUrl(`/memory/${encodeURIComponent(label)}/versions?limit=20`),
      );
      list.replaceChildren(...data.versions.map((version) => this.versionItem(version)));
      if (data.next_before) {
        list.append(
          el(
            "li",
            { class: "more" },
            `${data.total - data.versions.length} older versions not shown`,
          ),
        );
      }
    } catch (error) {
      list.replaceChildren(
        el("li", { class: "error" }, `Could not load the history: ${error.message}`),
      );
    }
  }

  versionItem(version) {
    const diff = el("pre", {
      class: "diff",
      "aria-label": `Changes in version ${version.version}`,
    });
    for (const line of version.diff) {
      if (line.op === "@") continue;
      const kind = line.op === "+" ? "add" : line.op === "-" ? "del" : "ctx";
      const sign = line.op === "+" ? "+ " : line.op === "-" ? "− " : "  ";
      diff.append(
        el(
          "span",
          { class: kind },
          kind === "add" ? el("span", { class: "visually-hidden" }, "added: ") : null,
          kind === "del" ? el("span", { class: "visually-hidden" }, "removed: ") : null,
          sign,
          line.text,
          "\n",
        ),
      );
    }
    if (!version.diff.length) {
      diff.append(el("span", { class: "ctx" }, version.value ? "(no change)" : "(empty)"));
    }
    return el(
      "li",
      { class: "version" },
      el(
        "p",
        { class: "version-meta" },
        el("strong", {}, `v${version.version}`),
        ` ${OPERATIONS[version.operation] ?? version.operation} · `,
        timeElement(new Date(version.updated_at)),
        version.conversation ? [" · in ", this.conversationLink(version.conversation)] : null,
        version.user_id ? [" · by ", this.chat.realName(version.user_id)] : null,
      ),
      diff,
    );
  }

  conversationLink(conversation) {
    return el(
      "a",
      { href: `#/${conversation.channel_id}/${conversation.thread_ts}`, title: conversation.id },
      `${this.chat.channelLabel(conversation.channel_id)} thread`,
    );
  }

  // notes

  renderNotes({ notes }) {
    const list = this.dom.notes;
    const before = this.notesShown;
    this.notesShown = new Set(notes.map((note) => note.id));
    if (!notes.length) {
      list.replaceChildren(el("li", { class: "empty" }, "None yet: Lore keeps notes as it learns."));
      return;
    }
    list.replaceChildren(...notes.map((note) => this.noteItem(note)));
    for (const note of notes) {
      if (before && !before.has(note.id)) {
        document.getElementById(`note-${note.id}`)?.classList.add("updated");
        this.announce(`Lore learned a note: ${note.text}`);
      }
    }
  }

  noteItem(note) {
    const context = this.chat.textContext();
    const links = note.sources.map((source, index) => {
      const label = `message ${index + 1}`;
      if (!source.permalink) return el("span", {}, label);
      const link = el(
        "a",
        { href: source.permalink, class: "source" },
        label,
        el("span", { class: "visually-hidden" }, ` in ${this.chat.channelLabel(source.channel_id)}`),
      );
      context.onLink(link);
      return link;
    });
    const joined = links.flatMap((link, index) => (index ? [", ", link] : [link]));
    return el(
      "li",
      { class: "note", id: `note-${note.id}` },
      el("p", { class: "note-text" }, renderText(note.text, context)),
      el(
        "p",
        { class: "note-meta" },
        "learned from ",
        ...joined,
        " in ",
        this.chat.channelLabel(note.channel_id),
        " · ",
        relativeElement(new Date(note.learned_at)),
      ),
    );
  }

  // conversations

  renderConversations({ conversations, total }) {
    this.counts.conversations = total;
    this.renderSummary();
    const list = this.dom.conversations;
    if (!conversations.length) {
      list.replaceChildren(el("li", { class: "empty" }, "None yet: mention @Lore in a thread."));
      return;
    }
    list.replaceChildren(
      ...conversations.map((conversation) =>
        el(
          "li",
          { class: "conversation" },
          el(
            "a",
            { href: `#/${conversation.channel_id}/${conversation.thread_ts}` },
            el("span", { class: "where" }, this.chat.channelLabel(conversation.channel_id)),
            " ",
            el(
              "span",
              { class: "title" },
              conversation.title
                ? `“${renderText(conversation.title, this.chat.textContext()).textContent}”`
                : "(thread)",
            ),
          ),
          el(
            "p",
            { class: "conversation-meta" },
            el("code", {}, conversation.id),
            " · active ",
            relativeElement(new Date(conversation.last_activity_at)),
            conversation.bot_replied ? "" : " · not answered yet",
          ),
        ),
      ),
    );
  }

  // search

  async search(query) {
    const results = this.dom.searchResults;
    const status = this.dom.searchStatus;
    if (!query.trim()) {
      results.replaceChildren();
      status.textContent = "";
      return;
    }
    status.textContent = "Searching…";
    try {
      const data = await getJSON(this.teamUrl(`/search?limit=8&q=${encodeURIComponent(query)}`));
      const count = data.results.length;
      status.textContent = count
        ? `${count} result${count === 1 ? "" : "s"} for “${query}” (every channel, admin view).`
        : `Nothing found for “${query}”.`;
      results.replaceChildren(...data.results.map((hit) => this.resultItem(hit)));
    } catch (error) {
      status.textContent = `Search failed: ${error.message}`;
    }
  }

  resultItem(hit) {
    const context = this.chat.textContext();
    const author = hit.is_bot ? "Lore" : this.chat.realName(hit.user_id);
    const channel = this.chat.channels.get(hit.channel_id);
    const text = el("div", { class: "text" }, renderText(hit.text, context));
    const open = hit.permalink
      ? el(
          "a",
          { href: hit.permalink, class: "open" },
          "Open",
          el("span", { class: "visually-hidden" }, ` message by ${author}`),
        )
      : null;
    if (open) context.onLink(open);
    return el(
      "li",
      { class: "result" },
      el(
        "p",
        { class: "result-meta" },
        el("strong", {}, author),
        " in ",
        channel?.is_private && !channel.is_im
          ? el("span", { class: "lock", role: "img", "aria-label": "private" })
          : null,
        this.chat.channelLabel(hit.channel_id),
        " · ",
        timeElement(tsDate(hit.ts)),
        " ",
        open,
      ),
      text,
    );
  }
}
