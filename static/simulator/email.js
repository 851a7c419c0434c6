// The simulated mail client: sends through our SMTP listener, shows the mail we send back.
(function () {
  "use strict";
  const root = document.getElementById("mail");
  if (!root) return;
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const from = document.getElementById("mail-from");
  const list = document.getElementById("mail-list");
  const reply = document.getElementById("mail-reply");
  const status = document.getElementById("mail-status");
  let seen = "";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text; // mail content is text, never markup
    return node;
  }

  async function poll() {
    try {
      const r = await fetch(root.dataset.inboxUrl + "?address=" + encodeURIComponent(from.value), { credentials: "same-origin" });
      if (!r.ok) return;
      const data = await r.json();
      const key = data.messages.map((m) => m.message_id).join("|");
      if (key === seen) return;
      seen = key;
      list.replaceChildren(...data.messages.slice().reverse().map((m) => {
        const li = el("li");
        li.append(el("h3", "", m.subject || "(no subject)"), el("div", "meta", m.from + " · " + new Date(m.at).toLocaleString()), el("div", "text", m.body));
        return li;
      }));
      const current = reply.value;
      reply.replaceChildren(el("option", "", reply.options[0].textContent), ...data.messages.map((m) => {
        const option = el("option", "", "Re: " + (m.subject || m.message_id));
        option.value = m.message_id;
        return option;
      }));
      reply.options[0].value = "";
      reply.value = current;
    } catch (e) { /* next poll */ }
  }

  reply.addEventListener("change", () => {
    const chosen = reply.options[reply.selectedIndex];
    if (reply.value) document.getElementById("mail-subject").value = chosen.textContent;
  });

  document.getElementById("mail-compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "…";
    status.classList.remove("error");
    const r = await fetch(root.dataset.sendUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({
        from: from.value, name: document.getElementById("mail-name").value,
        to: document.getElementById("mail-to").value, subject: document.getElementById("mail-subject").value,
        body: document.getElementById("mail-body").value, in_reply_to: reply.value,
      }),
    });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) { status.textContent = answer.error || ("HTTP " + r.status); status.classList.add("error"); return; }
    status.textContent = "✓ " + answer.message_id;
    document.getElementById("mail-body").value = "";
  });
  from.addEventListener("change", () => { seen = ""; poll(); });
  poll();
  setInterval(poll, 2500);
})();
