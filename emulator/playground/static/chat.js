// The Slack side of the playground: channels, threads, people, the composer, ephemerals.
// Everything goes through the emulator's control API; changes arrive as server-sent events.

import { RequestError, getJSON, postJSON } from "./net.js";
import {
  colourOf,
  contextActions,
  el,
  hasRichBlocks,
  relativeElement,
  renderBlocks,
  renderText,
  timeElement,
  toSlack,
  tsDate,
} from "./render.js";

const PERSON_KEY = "lore-playground.person";

function isTopLevel(message) {
  return (
    !message.thread_ts || message.thread_ts === message.ts || message.subtype === "thread_broadcast"
  );
}

function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

/** Loaded messages by ts, updated by those that arrived as events meanwhile (newer). */
function mergeLoaded(loaded, arrived) {
  const merged = new Map(loaded.map((message) => [message.ts, message]));
  for (const [ts, message] of arrived) merged.set(ts, message);
  return merged;
}

/** Where a permalink of this emulator points: {channel, root, ts}, or null. */
export function permalinkTarget(href) {
  let url;
  try {
    url = new URL(href, location.href);
  } catch {
    return null;
  }
  const match = /^\/archives\/([A-Z0-9]+)\/p(\d{7,})$/.exec(url.pathname);
  if (!match || url.port !== location.port) return null;
  const ts = `${match[2].slice(0, -6)}.${match[2].slice(-6)}`;
  return { channel: match[1], ts, root: url.searchParams.get("thread_ts") || ts };
}

export class Chat {
  constructor(config, announce) {
    this.config = config;
    this.bot = config.bot.user_id;
    this.announce = announce;
    this.users = new Map();
    this.channels = new Map();
    this.person = localStorage.getItem(PERSON_KEY) || "U0ALICE";
    this.channelId = null;
    this.threadTs = null;
    this.channelMessages = new Map();
    this.threadMessages = new Map();
    this.statuses = new Map();
    this.responses = new Map(); // command_id -> newest answer (every person's)
    this.responseOrder = new Map(); // command_id -> where it sorts among messages
    this.ephemerals = []; // chat.postEphemeral, every person's
    this.unread = new Map();
    this.seen = new Set();
    this.startedAt = Date.now() / 1000;
    const $ = (id) => document.getElementById(id);
    this.dom = {
      person: $("person"),
      channels: $("channels"),
      dms: $("dms"),
      title: $("channel-title"),
      purpose: $("channel-purpose"),
      messages: $("messages"),
      composer: $("composer"),
      composerLabel: $("composer-label"),
      composerForm: $("composer-form"),
      composerError: $("composer-error"),
      thread: $("thread"),
      threadWhere: $("thread-where"),
      threadStatus: $("thread-status"),
      threadMessagesList: $("thread-messages"),
      threadComposer: $("thread-composer"),
      threadForm: $("thread-form"),
      threadError: $("thread-error"),
      threadClose: $("thread-close"),
      layout: $("layout"),
    };
  }

  // loading

  async load() {
    await this.loadWorkspace();
    const [statuses, responses, ephemerals] = await Promise.all([
      getJSON("/_emulator/statuses"),
      getJSON("/_emulator/command_responses"),
      getJSON("/_emulator/ephemerals"),
    ]);
    for (const s of statuses.statuses) this.statuses.set(`${s.channel}/${s.thread_ts}`, s.status);
    responses.responses.forEach((response, index) => {
      this.responses.set(response.command_id, response);
      if (!this.responseOrder.has(response.command_id)) {
        this.responseOrder.set(response.command_id, this.startedAt + index / 1e6);
      }
    });
    this.ephemerals = ephemerals.ephemerals;
    this.bindComposer(this.dom.composerForm, this.dom.composer, this.dom.composerError, () => ({
      channel: this.channelId,
      threadTs: null,
    }));
    this.bindComposer(this.dom.threadForm, this.dom.threadComposer, this.dom.threadError, () => ({
      channel: this.channelId,
      threadTs: this.threadTs,
    }));
    for (const button of document.querySelectorAll("button.mention-lore")) {
      button.addEventListener("click", () => this.insertMention(button.dataset.target));
    }
    this.dom.person.addEventListener("change", () => this.choosePerson(this.dom.person.value));
    const closeThread = () => {
      location.hash = `#/${this.channelId}`;
      this.dom.composer.focus();
    };
    this.dom.threadClose.addEventListener("click", closeThread);
    this.dom.thread.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeThread();
    });
  }

  async loadWorkspace() {
    const [users, channels] = await Promise.all([
      getJSON("/_emulator/users"),
      getJSON("/_emulator/channels"),
    ]);
    this.users = new Map(users.users.map((user) => [user.id, user]));
    this.channels = new Map(channels.channels.map((channel) => [channel.id, channel]));
    const people = users.users.filter((user) => !user.is_bot && !user.deleted);
    if (!people.some((user) => user.id === this.person)) this.person = people[0]?.id ?? "";
    this.dom.person.replaceChildren(
      ...people.map((user) =>
        el(
          "option",
          { value: user.id, selected: user.id === this.person },
          `${user.real_name} (@${user.name})`,
        ),
      ),
    );
    this.renderSidebar();
  }

  /** After the event stream reconnected: reload what is shown. */
  async reload() {
    await this.loadWorkspace();
    if (this.channelId) await this.loadChannel();
    if (this.threadTs) await this.loadThread();
  }

  // names

  userName(id) {
    if (id === this.bot) return "Lore";
    const user = this.users.get(id);
    return user ? user.profile?.display_name || user.name : id;
  }

  realName(id) {
    if (id === this.bot) return "Lore";
    return this.users.get(id)?.real_name || id || "someone";
  }

  channelName(id) {
    const channel = this.channels.get(id);
    if (!channel) return id;
    if (channel.is_im)
      return channel.user === this.person ? "Lore" : `Lore & ${this.userName(channel.user)}`;
    return channel.name;
  }

  channelLabel(id) {
    const channel = this.channels.get(id);
    if (channel?.is_im) return this.channelName(id);
    return `#${this.channelName(id)}`;
  }

  canSee(channel) {
    if (channel.is_im) return channel.user === this.person;
    if (channel.is_private || channel.is_mpim) return channel.members.includes(this.person);
    return !channel.is_archived;
  }

  /** How text is rendered here: names, channels, and permalinks that open in the page. */
  textContext(extra = {}) {
    return {
      userName: (id) => this.userName(id),
      channelName: (id) => this.channelName(id),
      onLink: (anchor) => {
        const target = permalinkTarget(anchor.href);
        if (!target) {
          anchor.target = "_blank";
          return;
        }
        anchor.classList.add("permalink");
        anchor.addEventListener("click", (event) => {
          if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
          event.preventDefault();
          location.hash = `#/${target.channel}/${target.root}/${target.ts}`;
        });
      },
      ...extra,
    };
  }

  // navigation (location.hash is #/CHANNEL[/THREAD_TS[/HIGHLIGHT_TS]])

  async route() {
    const [channel, root, highlight] = location.hash.replace(/^#\/?/, "").split("/");
    await this.show(channel || null, root || null, highlight || null);
  }

  defaultChannel() {
    const general = [...this.channels.values()].find((c) => c.name === "general" && this.canSee(c));
    return general ?? [...this.channels.values()].find((c) => this.canSee(c));
  }

  async show(channelId, threadTs, highlight) {
    const wanted = this.channels.get(channelId);
    if (!wanted || !this.canSee(wanted)) {
      const fallback = this.defaultChannel();
      if (!fallback) return;
      if (channelId)
        this.announce(`You cannot see that conversation as ${this.realName(this.person)}.`);
      history.replaceState(null, "", `#/${fallback.id}`);
      channelId = fallback.id;
      threadTs = null;
      highlight = null;
    }
    const channelChanged = channelId !== this.channelId;
    if (channelChanged) {
      this.channelId = channelId;
      this.unread.delete(channelId);
      await this.loadChannel();
    }
    if (channelChanged || threadTs !== this.threadTs) {
      this.threadTs = threadTs;
      await this.loadThread();
    }
    this.renderSidebar();
    if (highlight) this.highlight(highlight);
  }

  highlight(ts) {
    for (const node of document.querySelectorAll(".message.highlight")) {
      node.classList.remove("highlight");
    }
    const inThread = this.dom.threadMessagesList.querySelector(`[data-ts="${CSS.escape(ts)}"]`);
    const inChannel = this.dom.messages.querySelector(`[data-ts="${CSS.escape(ts)}"]`);
    for (const node of [inChannel, inThread]) {
      if (!node) continue;
      node.classList.add("highlight");
      node.scrollIntoView({ block: "center" });
    }
    const target = inThread ?? inChannel;
    if (target) {
      target.tabIndex = -1;
      target.focus({ preventScroll: true });
    }
  }

  async loadChannel() {
    const channelId = this.channelId;
    const channel = this.channels.get(channelId);
    const label = this.channelLabel(channelId);
    this.dom.title.replaceChildren(
      channel?.is_private && !channel.is_im
        ? el("span", { class: "lock", role: "img", "aria-label": "private channel" })
        : "",
      label,
    );
    this.dom.purpose.textContent = channel?.is_im
      ? "Your direct messages with Lore: no need to mention it here."
      : channel?.purpose?.value || "";
    this.dom.composer.placeholder = `Message ${label}`;
    this.dom.composerLabel.textContent = `Message ${label}`;
    document.title = `${label} · Lore playground`;
    this.channelMessages = new Map(); // filled by events that arrive while loading
    const { messages } = await getJSON(
      `/_emulator/channels/${encodeURIComponent(channelId)}/messages`,
    );
    if (channelId !== this.channelId) return;
    this.channelMessages = mergeLoaded(messages, this.channelMessages);
    for (const message of messages) this.seen.add(`${channelId}/${message.ts}`);
    this.renderChannel();
  }

  /** Show or hide the thread pane, keeping the channel scrolled to its end if it was. */
  setThreadOpen(open) {
    const stick = nearBottom(this.dom.messages);
    this.dom.thread.hidden = !open;
    this.dom.layout.classList.toggle("with-thread", open);
    if (stick) this.dom.messages.scrollTop = this.dom.messages.scrollHeight;
  }

  async loadThread() {
    if (!this.threadTs) {
      this.setThreadOpen(false);
      this.threadMessages = new Map();
      return;
    }
    const channelId = this.channelId;
    const root = this.threadTs;
    this.threadMessages = new Map(); // filled by events that arrive while loading
    this.dom.threadMessagesList.replaceChildren(); // never show the previous thread's messages
    const { messages } = await getJSON(
      `/_emulator/threads/${encodeURIComponent(channelId)}/${encodeURIComponent(root)}`,
    );
    if (root !== this.threadTs || channelId !== this.channelId) return;
    this.threadMessages = mergeLoaded(messages, this.threadMessages);
    this.setThreadOpen(true);
    this.dom.threadWhere.textContent = this.channelLabel(channelId);
    this.renderThread();
  }

  // rendering

  renderSidebar() {
    const visible = [...this.channels.values()].filter((channel) => this.canSee(channel));
    const item = (channel) => {
      const unread = this.unread.get(channel.id) ?? 0;
      const current = channel.id === this.channelId;
      const prefix = channel.is_im
        ? el("span", { class: "dm-dot", "aria-hidden": "true" })
        : channel.is_private
          ? el("span", { class: "lock", role: "img", "aria-label": "private" })
          : el("span", { class: "hash", "aria-hidden": "true" }, "#");
      return el(
        "li",
        {},
        el(
          "a",
          {
            href: `#/${channel.id}`,
            "aria-current": current ? "page" : null,
            class: unread ? "has-unread" : null,
          },
          prefix,
          el("span", { class: "name" }, this.channelName(channel.id)),
          unread
            ? el(
                "span",
                { class: "unread" },
                el("span", { class: "visually-hidden" }, ", new: "),
                String(unread),
              )
            : null,
        ),
      );
    };
    const byName = (a, b) => a.name.localeCompare(b.name);
    this.dom.channels.replaceChildren(
      ...visible
        .filter((c) => !c.is_im)
        .sort(byName)
        .map(item),
    );
    this.dom.dms.replaceChildren(...visible.filter((c) => c.is_im).map(item));
  }

  renderChannel() {
    const list = this.dom.messages;
    const items = [...this.channelMessages.values()].map((message) =>
      this.messageNode(message, false),
    );
    items.push(...this.ephemeralNodes(this.channelId, null));
    items.sort((a, b) => parseFloat(a.dataset.sort) - parseFloat(b.dataset.sort));
    if (!items.length) {
      items.push(
        el("li", { class: "empty" }, "No messages yet. Say hello, or ask @Lore something."),
      );
    }
    list.replaceChildren(...items);
    list.scrollTop = list.scrollHeight;
  }

  renderThread() {
    const list = this.dom.threadMessagesList;
    const items = [...this.threadMessages.values()].map((message) =>
      this.messageNode(message, true),
    );
    items.push(...this.ephemeralNodes(this.channelId, this.threadTs));
    items.sort((a, b) => parseFloat(a.dataset.sort) - parseFloat(b.dataset.sort));
    list.replaceChildren(...items);
    list.scrollTop = list.scrollHeight;
    this.renderThreadStatus();
  }

  renderThreadStatus() {
    const status = this.threadTs ? this.statuses.get(`${this.channelId}/${this.threadTs}`) : null;
    this.dom.threadStatus.textContent = status ? `Lore ${status}` : "";
  }

  fromBot(message) {
    return Boolean(message.bot_id) || message.user === this.bot;
  }

  messageNode(message, inThread) {
    const fromBot = this.fromBot(message);
    const streaming = message.streaming_state === "in_progress";
    const author = fromBot ? "Lore" : this.realName(message.user);
    const classes = ["message"];
    if (fromBot) classes.push("from-bot");
    if (streaming) classes.push("streaming");
    if (message.subtype === "tombstone") classes.push("tombstone");
    const text = el("div", { class: "text" });
    const buttons = this.textContext({
      onAction: (actionId, value) => this.pressMessageButton(message.ts, actionId, value),
    });
    if (message.subtype === "tombstone") text.append("This message was deleted.");
    else if (hasRichBlocks(message)) text.append(renderBlocks(message.blocks, buttons));
    else {
      text.append(renderText(message.text ?? "", this.textContext()));
      text.append(renderBlocks(contextActions(message), buttons));
    }
    if (streaming) text.append(el("span", { class: "cursor", "aria-hidden": "true" }));
    const body = el(
      "div",
      { class: "body" },
      el(
        "p",
        { class: "meta" },
        el("strong", { class: "author" }, author),
        fromBot ? el("span", { class: "app-badge" }, "App") : null,
        " ",
        timeElement(tsDate(message.ts)),
        message.edited && !fromBot ? el("span", { class: "edited" }, " (edited)") : null,
        streaming ? el("span", { class: "visually-hidden" }, " (still writing)") : null,
      ),
      text,
    );
    if (!inThread && isTopLevel(message) && message.subtype !== "tombstone") {
      body.append(this.threadFooter(message, author));
    }
    return el(
      "li",
      {
        class: classes.join(" "),
        dataset: { key: message.ts, ts: message.ts, sort: message.ts },
        "aria-busy": streaming ? "true" : null,
      },
      el(
        "span",
        {
          class: "avatar",
          "aria-hidden": "true",
          style: `background:${fromBot ? "#1d1c1d" : colourOf(message.user)}`,
        },
        author.slice(0, 1).toUpperCase(),
      ),
      body,
    );
  }

  threadFooter(message, author) {
    const footer = el("div", { class: "thread-footer" });
    const open = () => {
      location.hash = `#/${this.channelId}/${message.ts}`;
      requestAnimationFrame(() => this.dom.threadComposer.focus());
    };
    const count = message.reply_count ?? 0;
    if (count) {
      footer.append(
        el(
          "button",
          {
            type: "button",
            class: "replies",
            dataset: { focusKey: `replies-${message.ts}` },
            onclick: open,
          },
          `${count} ${count === 1 ? "reply" : "replies"}`,
        ),
        el(
          "span",
          { class: "latest" },
          "Last reply ",
          relativeElement(tsDate(message.latest_reply)),
        ),
      );
    } else {
      footer.append(
        el(
          "button",
          {
            type: "button",
            class: "reply-link",
            dataset: { focusKey: `reply-${message.ts}` },
            "aria-label": `Reply in thread to ${author}`,
            onclick: open,
          },
          "Reply in thread",
        ),
      );
    }
    const status = this.statuses.get(`${this.channelId}/${message.ts}`);
    if (status) footer.append(el("span", { class: "typing" }, `Lore ${status}`));
    return footer;
  }

  /** Ephemeral messages and slash-command answers the current person sees here. */
  ephemeralNodes(channelId, threadTs) {
    const nodes = [];
    if (!threadTs) {
      for (const [commandId, response] of this.responses) {
        if (response.user !== this.person || response.channel !== channelId) continue;
        if (response.response_type === "in_channel" || response.delete_original) continue;
        nodes.push(
          this.ephemeralNode(
            `cmd-${commandId}`,
            this.responseOrder.get(commandId),
            response,
            commandId,
          ),
        );
      }
    }
    for (const ephemeral of this.ephemerals) {
      if (ephemeral.user !== this.person || ephemeral.channel !== channelId) continue;
      if ((ephemeral.thread_ts || null) !== (threadTs || null)) continue;
      nodes.push(
        this.ephemeralNode(`eph-${ephemeral.ts}`, parseFloat(ephemeral.ts), ephemeral, null),
      );
    }
    return nodes;
  }

  ephemeralNode(key, sort, item, commandId) {
    const context = this.textContext({
      onAction: (actionId, value) => this.pressButton(commandId, actionId, value),
    });
    const text = el(
      "div",
      { class: "text" },
      item.blocks?.length
        ? renderBlocks(item.blocks, context)
        : renderText(item.text ?? "", context),
    );
    return el(
      "li",
      { class: "message from-bot ephemeral", dataset: { key, sort: String(sort) } },
      el("span", { class: "avatar", "aria-hidden": "true", style: "background:#1d1c1d" }, "L"),
      el(
        "div",
        { class: "body" },
        el(
          "p",
          { class: "meta" },
          el("strong", { class: "author" }, "Lore"),
          el("span", { class: "app-badge" }, "App"),
          " ",
          el("span", { class: "only-you" }, "Only visible to you"),
          item.command ? el("span", { class: "command" }, ` · ${item.command}`) : null,
        ),
        text,
      ),
    );
  }

  /** Add or update one item of a list, keeping its place, the scroll position and focus. */
  place(list, node) {
    const stick = nearBottom(list);
    const focusKey = document.activeElement?.dataset?.focusKey;
    const existing = list.querySelector(`:scope > [data-key="${CSS.escape(node.dataset.key)}"]`);
    list.querySelector(":scope > .empty")?.remove();
    if (existing) {
      existing.className = node.className;
      if (node.hasAttribute("aria-busy")) existing.setAttribute("aria-busy", "true");
      else existing.removeAttribute("aria-busy");
      existing.replaceChildren(...node.childNodes);
      node = existing;
    } else {
      const sort = parseFloat(node.dataset.sort);
      const after = [...list.children].find((child) => parseFloat(child.dataset.sort) > sort);
      list.insertBefore(node, after ?? null);
    }
    if (focusKey) node.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // events from the emulator

  onMessage({ channel, message }) {
    const key = `${channel}/${message.ts}`;
    const isNew = !this.seen.has(key);
    this.seen.add(key);
    let shown = false;
    if (channel === this.channelId && isTopLevel(message)) {
      this.channelMessages.set(message.ts, message);
      this.place(this.dom.messages, this.messageNode(message, false));
      shown = true;
    }
    const root = message.thread_ts || message.ts;
    if (this.threadTs && channel === this.channelId && root === this.threadTs) {
      this.threadMessages.set(message.ts, message);
      this.place(this.dom.threadMessagesList, this.messageNode(message, true));
      shown = true;
    }
    const recent = parseFloat(message.ts) > this.startedAt - 5;
    const elsewhere = channel !== this.channelId && this.channels.has(channel);
    if (!shown && elsewhere && isNew && recent && message.user !== this.person) {
      this.unread.set(channel, (this.unread.get(channel) ?? 0) + 1);
      this.renderSidebar();
    }
  }

  onDeleted({ channel, ts }) {
    if (channel !== this.channelId) return;
    this.channelMessages.delete(ts);
    this.threadMessages.delete(ts);
    for (const list of [this.dom.messages, this.dom.threadMessagesList]) {
      list.querySelector(`:scope > [data-key="${CSS.escape(ts)}"]`)?.remove();
    }
  }

  onStatus({ channel, thread_ts: threadTs, status }) {
    const key = `${channel}/${threadTs}`;
    if (status) this.statuses.set(key, status);
    else this.statuses.delete(key);
    if (channel !== this.channelId) return;
    const parent = this.channelMessages.get(threadTs);
    if (parent) this.place(this.dom.messages, this.messageNode(parent, false));
    if (threadTs === this.threadTs) this.renderThreadStatus();
  }

  onCommandResponse(response) {
    if (!this.responseOrder.has(response.command_id)) {
      this.responseOrder.set(response.command_id, Date.now() / 1000);
    }
    this.responses.set(response.command_id, response);
    if (response.user !== this.person || response.channel !== this.channelId) return;
    if (response.response_type === "in_channel") return; // it arrives as a message
    if (response.delete_original) {
      this.dom.messages
        .querySelector(`[data-key="cmd-${CSS.escape(response.command_id)}"]`)
        ?.remove();
      return;
    }
    const key = `cmd-${response.command_id}`;
    this.place(
      this.dom.messages,
      this.ephemeralNode(
        key,
        this.responseOrder.get(response.command_id),
        response,
        response.command_id,
      ),
    );
  }

  onEphemeral(ephemeral) {
    this.ephemerals.push(ephemeral);
    if (ephemeral.user !== this.person || ephemeral.channel !== this.channelId) return;
    const node = this.ephemeralNode(
      `eph-${ephemeral.ts}`,
      parseFloat(ephemeral.ts),
      ephemeral,
      null,
    );
    if (!ephemeral.thread_ts) this.place(this.dom.messages, node);
    else if (ephemeral.thread_ts === this.threadTs) this.place(this.dom.threadMessagesList, node);
  }

  // acting

  choosePerson(id) {
    this.person = id;
    localStorage.setItem(PERSON_KEY, id);
    this.announce(`Now posting as ${this.realName(id)}.`);
    const current = this.channels.get(this.channelId);
    if (!current || !this.canSee(current)) {
      const fallback = this.defaultChannel();
      if (fallback) location.hash = `#/${fallback.id}`;
      return;
    }
    this.renderSidebar();
    this.renderChannel();
    if (this.threadTs) this.renderThread();
  }

  insertMention(targetId) {
    const area = document.getElementById(targetId);
    const start = area.selectionStart ?? area.value.length;
    const before = area.value.slice(0, start);
    const spacer = before && !/\s$/.test(before) ? " " : "";
    area.setRangeText(`${spacer}@Lore `, start, area.selectionEnd ?? start, "end");
    area.focus();
  }

  bindComposer(form, area, errorBox, where) {
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = area.value;
      if (!text.trim()) return;
      area.value = "";
      errorBox.textContent = "";
      try {
        await this.send(text, where());
      } catch (error) {
        if (!area.value) area.value = text;
        errorBox.textContent = error.message;
      }
    });
  }

  async send(text, { channel, threadTs }) {
    const trimmed = text.trim();
    const command = /^\/(\S+)\s*([\s\S]*)$/.exec(trimmed);
    if (command) {
      await this.runCommand(channel, `/${command[1]}`, command[2]);
      return;
    }
    const slackText = toSlack(trimmed, {
      users: this.users,
      channels: this.channels,
      botUserId: this.bot,
    });
    let posted;
    try {
      posted = await postJSON("/_emulator/messages", {
        user: this.person,
        channel,
        text: slackText,
        thread_ts: threadTs,
      });
    } catch (error) {
      const reason = error.body?.error ?? error.message;
      throw new Error(
        reason === "not_in_channel"
          ? `${this.realName(this.person)} is not a member of ${this.channelLabel(channel)}.`
          : `Could not post: ${reason}`,
      );
    }
    const asksLore = slackText.includes(`<@${this.bot}>`) || this.channels.get(channel)?.is_im;
    if (!threadTs && asksLore) location.hash = `#/${channel}/${posted.ts}`;
  }

  async runCommand(channel, command, text) {
    try {
      const result = await postJSON("/_emulator/commands", {
        user: this.person,
        channel,
        command,
        text,
      });
      if (result.response) this.onCommandResponseFromAck(result, command, channel);
    } catch (error) {
      if (error instanceof RequestError && error.body && "status" in error.body) {
        const status = error.body.status;
        throw new Error(
          status === 404
            ? `Lore does not know ${command}.`
            : status
              ? `Lore answered ${command} with HTTP ${status}.`
              : `Lore did not answer ${command} in time.`,
        );
      }
      throw error;
    }
  }

  // An acknowledgement also arrives as an event; this only makes sure it shows at once.
  onCommandResponseFromAck(result, command, channel) {
    const commandId = result.response_url.split("/").pop();
    if (this.responses.has(commandId)) return;
    this.onCommandResponse({
      command_id: commandId,
      command,
      channel,
      user: this.person,
      via: "ack",
      response_type: result.response.response_type || "ephemeral",
      text: result.response.text ?? "",
      blocks: result.response.blocks ?? null,
      replace_original: false,
      delete_original: false,
    });
  }

  async pressButton(commandId, actionId, value) {
    if (!commandId) return;
    try {
      await postJSON("/_emulator/actions", {
        user: this.person,
        command_id: commandId,
        action_id: actionId,
        value,
      });
    } catch (error) {
      this.dom.composerError.textContent = `That button did not work: ${error.message}`;
    }
  }

  async pressMessageButton(ts, actionId, value) {
    try {
      await postJSON("/_emulator/message_actions", {
        user: this.person,
        channel: this.channelId,
        ts,
        action_id: actionId,
        value,
      });
    } catch (error) {
      this.dom.composerError.textContent = `That button did not work: ${error.message}`;
    }
  }
}
