// The playground's entry point: load the workspace, follow the emulator's changes, route.

import { AgentView } from "./agent.js";
import { Chat } from "./chat.js";
import { follow, getJSON } from "./net.js";
import { refreshRelativeTimes } from "./render.js";

const announcer = document.getElementById("announcer");
const connection = document.getElementById("connection");

/** Say something to screen-reader users (polite live region). */
function announce(text) {
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

async function main() {
  const config = await getJSON("/_emulator/playground");
  document.getElementById("team-name").textContent = config.team.name;
  const chat = new Chat(config, announce);
  await chat.load();
  const agent = new AgentView(config, chat, announce);
  follow(
    "/_emulator/stream",
    {
      message: (data) => chat.onMessage(data),
      message_deleted: (data) => chat.onDeleted(data),
      status: (data) => chat.onStatus(data),
      command_response: (data) => chat.onCommandResponse(data),
      ephemeral: (data) => chat.onEphemeral(data),
      workspace: () => chat.loadWorkspace(),
    },
    {
      onOpen: (reconnected) => {
        connection.hidden = true;
        document.body.dataset.live = "yes";
        if (reconnected) chat.reload();
      },
      onDown: () => {
        connection.hidden = false;
        document.body.dataset.live = "no";
      },
    },
  );
  window.addEventListener("hashchange", () => chat.route());
  await chat.route();
  agent.start();
  setInterval(() => refreshRelativeTimes(), 30_000);
  document.body.dataset.ready = "yes";
}

main().catch((error) => {
  console.error(error);
  connection.hidden = false;
  connection.textContent = `The playground could not start: ${error.message}`;
});
