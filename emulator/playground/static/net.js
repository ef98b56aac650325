// HTTP and server-sent events, with errors as readable messages.

export class RequestError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { text };
  }
  if (!response.ok || (body && body.ok === false)) {
    const reason = body?.message || body?.error || `HTTP ${response.status}`;
    throw new RequestError(reason, response.status, body);
  }
  return body;
}

export async function getJSON(url) {
  return parse(await fetch(url, { headers: { Accept: "application/json" } }));
}

export async function postJSON(url, body) {
  return parse(
    await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    }),
  );
}

/**
 * Follow a server-sent event stream. `handlers` maps event names to functions of the parsed
 * data; `onOpen(reconnected)` runs on every (re)connection, `onDown()` when the stream drops.
 * EventSource reconnects by itself.
 */
export function follow(url, handlers, { onOpen, onDown } = {}) {
  const source = new EventSource(url);
  let opened = false;
  source.addEventListener("open", () => {
    onOpen?.(opened);
    opened = true;
  });
  source.addEventListener("error", () => onDown?.());
  for (const [event, handle] of Object.entries(handlers)) {
    source.addEventListener(event, (message) => {
      try {
        handle(JSON.parse(message.data));
      } catch (error) {
        console.error(`event ${event} failed`, error);
      }
    });
  }
  return source;
}
