// The simulated phone: texts our numbers through signed webhooks, shows what we send back.
(function () {
  "use strict";
  const root = document.getElementById("phone");
  if (!root) return;
  const thread = document.getElementById("phone-thread");
  const from = document.getElementById("phone-from");
  const to = document.getElementById("phone-to");
  const body = document.getElementById("phone-body");
  const status = document.getElementById("phone-status");
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const sent = [];
  let received = [];

  function bubble(text, cls, meta) {
    const li = document.createElement("li");
    li.className = cls;
    li.textContent = text; // customer and agent text is always text, never markup
    const small = document.createElement("small");
    small.textContent = meta;
    li.appendChild(small);
    return li;
  }

  function render() {
    const items = sent.map((m) => ({ at: m.at, el: bubble(m.body, "out", "me · " + new Date(m.at).toLocaleTimeString()) }))
      .concat(received.map((m) => ({ at: m.at, el: bubble(m.body, "in", (m.whatsapp ? "WhatsApp · " : "SMS · ") + m.from + " · " + new Date(m.at).toLocaleTimeString()) })));
    items.sort((a, b) => a.at.localeCompare(b.at));
    const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
    thread.replaceChildren(...items.map((i) => i.el));
    if (atBottom) thread.scrollTop = thread.scrollHeight;
  }

  async function poll() {
    try {
      const r = await fetch(root.dataset.inboxUrl + "?number=" + encodeURIComponent(from.value), { credentials: "same-origin" });
      if (r.ok) { received = (await r.json()).messages; render(); }
    } catch (e) { /* offline for a moment: the next poll catches up */ }
  }

  document.getElementById("phone-compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = body.value;
    if (!text.trim()) return;
    const option = to.options[to.selectedIndex];
    status.textContent = "…";
    status.classList.remove("error");
    const r = await fetch(root.dataset.sendUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ from: from.value, to: option.value, body: text, whatsapp: option.dataset.whatsapp === "1" }),
    });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) { status.textContent = answer.error || ("HTTP " + r.status); status.classList.add("error"); return; }
    sent.push({ body: text, at: new Date().toISOString() });
    body.value = "";
    status.textContent = "✓ " + answer.sid;
    render();
  });
  body.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) document.getElementById("phone-compose").requestSubmit();
  });
  from.addEventListener("change", poll);
  poll();
  setInterval(poll, 2000);
})();
