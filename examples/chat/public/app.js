// The chat page: one live query (messages:list) and one mutation (messages:send)
// through the official Convex browser client (convex.js defines `convex`).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const apiUrl = params.get("api") || document.querySelector('meta[name="syncline-api"]').content;
  const channel = (params.get("channel") || "general").toLowerCase();

  const list = $("messages");
  const scroller = $("scroller");
  const author = $("author");
  const body = $("body");
  const errorBox = $("error");

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  $("channel").textContent = `#${channel}`;
  document.title = `#${channel} · Syncline chat`;

  // The name is kept per tab, so two tabs can be two people.
  author.value =
    sessionStorage.getItem("chat-name") || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  author.addEventListener("change", () => sessionStorage.setItem("chat-name", author.value.trim()));
  sessionStorage.setItem("chat-name", author.value);

  if (typeof convex === "undefined") {
    showError("convex.js did not load: run `npm ci` in examples/chat, then reload.");
    $("send").disabled = true;
    return;
  }

  const client = new convex.ConvexClient(apiUrl);
  const api = convex.anyApi;

  const status = $("status");
  client.subscribeToConnectionState((state) => {
    status.classList.toggle("online", state.isWebSocketConnected);
    status.textContent = state.isWebSocketConnected ? "live" : "connecting…";
  });

  function formatTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function render(messages) {
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    const me = author.value.trim();
    list.replaceChildren(
      ...messages.map((m) => {
        const li = document.createElement("li");
        li.className = m.author === me ? "msg mine" : "msg";
        li.dataset.id = m._id;
        const meta = document.createElement("div");
        meta.className = "meta";
        const who = document.createElement("span");
        who.className = "author";
        who.textContent = m.author;
        const when = document.createElement("time");
        when.dateTime = new Date(m._creationTime).toISOString();
        when.textContent = formatTime(m._creationTime);
        meta.append(who, when);
        const text = document.createElement("p");
        text.className = "body";
        text.textContent = m.body;
        li.append(meta, text);
        return li;
      }),
    );
    $("empty").hidden = messages.length > 0;
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  let latest = [];
  client.onUpdate(
    api.messages.list,
    { channel, limit: 100 },
    (messages) => {
      latest = messages;
      render(messages);
    },
    (error) => showError(`Could not load messages: ${error.message}`),
  );
  // Re-mark "my" messages when the name changes.
  author.addEventListener("input", () => render(latest));

  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = body.value;
    if (!text.trim()) return;
    body.value = "";
    showError("");
    try {
      await client.mutation(api.messages.send, { author: author.value, body: text, channel });
      scroller.scrollTop = scroller.scrollHeight;
    } catch (error) {
      body.value = body.value || text; // give the text back
      showError(error.data?.message ?? error.message);
    }
  });
})();
