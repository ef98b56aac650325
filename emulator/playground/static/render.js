// Building DOM safely (never innerHTML with message text), Slack text and Block Kit rendering.

/** Create an element: el("a", {href: "#", class: "x"}, "text", child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">" };

/** Slack escapes &, < and > in message text; show them as typed. */
export function unescapeSlack(text) {
  return text.replace(/&(amp|lt|gt);/g, (entity) => ENTITIES[entity]);
}

/** What a person typed, as Slack stores it: escaped, with @names and #channels as entities. */
export function toSlack(text, { users, channels, botUserId }) {
  let out = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  out = out.replace(/(^|[^\w<])@([\w.-]+)/g, (whole, before, name) => {
    const lower = name.toLowerCase();
    if (lower === "lore") return `${before}<@${botUserId}>`;
    for (const user of users.values()) {
      if (user.name.toLowerCase() === lower) return `${before}<@${user.id}>`;
    }
    return whole;
  });
  out = out.replace(/(^|[^\w&<])#([\w-]+)/g, (whole, before, name) => {
    for (const channel of channels.values()) {
      if (!channel.is_im && channel.name === name) return `${before}<#${channel.id}>`;
    }
    return whole;
  });
  return out;
}

const SAFE_URL = /^(https?:|mailto:)/i;

// Slack entities <...>, markdown links, code spans, bold (**x** or *x*), italics (_x_).
const INLINE =
  /<([@#!]?)([^<>|\s]+)(?:\|([^<>]*))?>|\[([^\]\n]+)\]\(((?:https?:\/\/|mailto:)[^\s)]+)\)|`([^`\n]+)`|\*\*([^*\n]+)\*\*|\*([^*\n]+)\*|(?<![\w])_([^\s_](?:[^\n]*?[^\s_])?)_(?![\w])/g;

/**
 * Slack text (mrkdwn, and the markdown Lore streams) as DOM nodes.
 * ctx: {userName(id), channelName(id), onLink(anchor)}.
 */
export function renderText(text, ctx) {
  const fragment = document.createDocumentFragment();
  let quote = null;
  let first = true;
  for (const line of String(text ?? "").split("\n")) {
    const quoted = /^(?:&gt;|>)\s?/.exec(line);
    if (quoted) {
      if (quote) quote.append("\n");
      else fragment.append((quote = el("blockquote")));
      inline(line.slice(quoted[0].length), ctx, quote);
    } else {
      if (quote) quote = null;
      else if (!first) fragment.append("\n");
      inline(line, ctx, fragment);
    }
    first = false;
  }
  return fragment;
}

function inline(text, ctx, target) {
  let position = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > position) target.append(unescapeSlack(text.slice(position, match.index)));
    target.append(token(match, ctx));
    position = match.index + match[0].length;
  }
  if (position < text.length) target.append(unescapeSlack(text.slice(position)));
}

function token(match, ctx) {
  const [whole, sigil, target, label, mdLabel, mdUrl, code, strong, strong2, em] = match;
  if (target !== undefined) {
    if (sigil === "@") {
      return el("span", { class: "mention" }, `@${label || ctx.userName(target)}`);
    }
    if (sigil === "#") {
      const name = label || ctx.channelName(target);
      return el("a", { class: "channel-ref", href: `#/${target}` }, `#${name}`);
    }
    if (sigil === "!") return el("span", { class: "mention" }, `@${label || target.split("^")[0]}`);
    if (SAFE_URL.test(target)) return link(target, label || target, ctx);
    return unescapeSlack(whole);
  }
  if (mdUrl !== undefined) return link(mdUrl, mdLabel, ctx);
  if (code !== undefined) return el("code", {}, unescapeSlack(code));
  if (strong !== undefined) return el("strong", {}, unescapeSlack(strong));
  if (strong2 !== undefined) return el("strong", {}, unescapeSlack(strong2));
  if (em !== undefined) return el("em", {}, unescapeSlack(em));
  return unescapeSlack(whole);
}

function link(url, label, ctx) {
  const anchor = el("a", { href: unescapeSlack(url), rel: "noopener" }, unescapeSlack(label));
  ctx.onLink?.(anchor);
  return anchor;
}

/** Block Kit (section, context, divider, actions, header, rich_text) as DOM nodes. */
export function renderBlocks(blocks, ctx) {
  const fragment = document.createDocumentFragment();
  for (const block of blocks ?? []) {
    if (block.type === "section") {
      const section = el("div", { class: "bk-section" });
      if (block.text) section.append(el("div", { class: "text" }, blockText(block.text, ctx)));
      for (const field of block.fields ?? []) {
        section.append(el("div", { class: "text" }, blockText(field, ctx)));
      }
      if (block.accessory?.type === "button") section.append(button(block.accessory, ctx));
      fragment.append(section);
    } else if (block.type === "header") {
      fragment.append(el("p", { class: "bk-header" }, block.text?.text ?? ""));
    } else if (block.type === "divider") {
      fragment.append(el("hr", { class: "bk-divider" }));
    } else if (block.type === "context") {
      fragment.append(
        el(
          "p",
          { class: "bk-context" },
          (block.elements ?? []).map((e) => blockText(e, ctx)),
        ),
      );
    } else if (block.type === "actions") {
      fragment.append(
        el(
          "div",
          { class: "bk-actions" },
          (block.elements ?? []).map((e) => button(e, ctx)),
        ),
      );
    } else if (block.type === "context_actions") {
      fragment.append(
        el(
          "div",
          { class: "bk-actions" },
          (block.elements ?? []).flatMap((e) => contextAction(e, ctx)),
        ),
      );
    }
  }
  return fragment;
}

/** A context_actions element: feedback_buttons as their two buttons, others as one. */
function contextAction(element, ctx) {
  if (element.type !== "feedback_buttons") return [button(element, ctx)];
  return [element.positive_button, element.negative_button].map((half) =>
    button({ action_id: element.action_id, value: half?.value, text: half?.text }, ctx),
  );
}

function blockText(text, ctx) {
  if (!text) return "";
  if (text.type === "mrkdwn") return renderText(text.text ?? "", ctx);
  return text.text ?? "";
}

function button(element, ctx) {
  const label = element.text?.text ?? "Button";
  if (element.url && SAFE_URL.test(element.url)) {
    const anchor = el("a", { class: "bk-button", href: element.url, rel: "noopener" }, label);
    ctx.onLink?.(anchor);
    return anchor;
  }
  return el(
    "button",
    {
      type: "button",
      class: "bk-button",
      onclick: () => ctx.onAction?.(element.action_id, element.value ?? ""),
    },
    label,
  );
}

/** Whether a message's blocks say more than its text (rich_text blocks only repeat it, and
 * context_actions, such as feedback buttons, come under it). */
export function hasRichBlocks(message) {
  return (message.blocks ?? []).some(
    (block) => block.type !== "rich_text" && block.type !== "context_actions",
  );
}

/** The context_actions blocks of a message, shown under its text. */
export function contextActions(message) {
  return (message.blocks ?? []).filter((block) => block.type === "context_actions");
}

/** A Slack ts ("1700000000.000100") as a Date. */
export function tsDate(ts) {
  return new Date(parseFloat(ts) * 1000);
}

const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

/** A <time> element: "14:05" today, "Mar 3, 14:05" before. */
export function timeElement(date) {
  const today = new Date().toDateString() === date.toDateString();
  const shown = today ? TIME.format(date) : `${DAY.format(date)}, ${TIME.format(date)}`;
  return el("time", { datetime: date.toISOString(), title: FULL.format(date) }, shown);
}

/** "just now", "5 min ago", "3 h ago", "2 days ago". */
export function relative(date, now = Date.now()) {
  const seconds = Math.max(0, (now - date.getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  const days = Math.round(seconds / 86400);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

/** A <time> that says how long ago, refreshed by refreshRelativeTimes(). */
export function relativeElement(date) {
  return el(
    "time",
    { class: "relative", datetime: date.toISOString(), title: FULL.format(date) },
    relative(date),
  );
}

export function refreshRelativeTimes(root = document) {
  for (const node of root.querySelectorAll("time.relative")) {
    node.textContent = relative(new Date(node.getAttribute("datetime")));
  }
}

const PALETTE = ["#8a3ffc", "#1192e8", "#007d79", "#d02670", "#b28600", "#198038", "#6929c4"];

/** A stable colour per person. */
export function colourOf(id) {
  let hash = 0;
  for (const char of id ?? "") hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}
