// The simulated phone calling our voice line: each step is one signed webhook (made by the
// server), answered with the TwiML verbs, shown as the caller would hear them.
(function () {
  "use strict";
  const root = document.getElementById("phone-call");
  if (!root) return;
  const url = root.dataset.callUrl;
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const from = document.getElementById("phone-from");
  const to = document.getElementById("call-to");
  const log = document.getElementById("call-log");
  const keypad = document.getElementById("call-keypad");
  const recording = document.getElementById("call-recording");
  const dial = document.getElementById("call-dial");
  const hangup = document.getElementById("call-hangup");
  let call = null; // {sid, next, hold, started, direction}
  let holdTimer = null;
  let ringTimer = null;

  function line(text, cls) {
    const li = document.createElement("li");
    li.className = cls || "in";
    li.textContent = text; // TwiML text is shown as text, never markup
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }

  function show(verbs, indent) {
    (verbs || []).forEach((v) => {
      const pad = indent || "";
      if (v.verb === "Say") line(pad + "🗣 [" + (v.language || "") + "] " + v.text);
      else if (v.verb === "Play") line(pad + "♪ " + v.text);
      else if (v.verb === "Gather") line(pad + "⌨ " + (v.input || "dtmf"));
      else if (v.verb === "Enqueue") line(pad + "⏳ on hold in “" + v.text + "”");
      else if (v.verb === "Record") line(pad + "⏺ recording");
      else if (v.verb === "Dial") line(pad + "✔ connected to " + (v.children || []).map((c) => c.text).join(", ") + " (no audio)");
      else line(pad + v.verb + " " + (v.text || ""));
      if (v.verb !== "Dial") show(v.children, pad + "  ");
    });
  }

  async function post(body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(Object.assign({ from: from.value, to: to.value, call_sid: call && call.sid,
                                           direction: call && call.direction }, body)),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.status);
    return data;
  }

  function stopTimers() {
    clearTimeout(holdTimer);
    holdTimer = null;
  }

  async function stepTo(body) {
    const data = await post(body);
    if (!call) return;
    call.sid = data.call_sid;
    if (data.path) call.path = data.path;
    show(data.verbs);
    await follow(data.next || {});
  }

  // Connected to an agent: the call moves when our server redirects it (the keypad survey after
  // the agent hung up, back on hold when the agent did not answer) or ends it.
  async function listen() {
    if (!call || !call.next || call.next.kind !== "connected") return;
    const data = await post({ connected: true, path: call.path }).catch(() => null);
    if (!call || !call.next || call.next.kind !== "connected") return;
    if (!data || (data.next && data.next.waiting)) { holdTimer = setTimeout(listen, 3000); return; }
    if (data.path) call.path = data.path;
    show(data.verbs);
    await follow(data.next || {});
  }

  async function follow(next) {
    keypad.hidden = true;
    recording.hidden = true;
    call.next = next;
    if (next.kind === "gather") {
      if (call.hold) { keypad.hidden = false; holdTimer = setTimeout(() => stepTo({ path: call.hold.wait_url, hold: true }), 8000); }
      else keypad.hidden = false;
    } else if (next.kind === "hold") {
      call.hold = next;
      await stepTo({ path: next.wait_url, hold: true });
    } else if (next.kind === "left") {
      stopTimers();
      const hold = call.hold;
      call.hold = null;
      await stepTo({ path: hold.action, QueueResult: "leave" });
    } else if (next.kind === "record") {
      recording.hidden = false;
    } else if (next.kind === "redirect") {
      await stepTo({ path: next.url });
    } else if (next.kind === "connected") {
      stopTimers();
      call.hold = null;
      holdTimer = setTimeout(listen, 3000);
    } else if (next.kind === "ended" || next.kind === "end_of_document") {
      await end(false);
    }
  }

  async function end(byCaller) {
    stopTimers();
    if (!call) return;
    const current = call;
    if (byCaller && current.hold) await post({ path: current.hold.action, QueueResult: "hangup" }).catch(() => {});
    const seconds = Math.max(1, Math.round((Date.now() - current.started) / 1000));
    await post({ path: "/webhooks/twilio/voice/status/", CallStatus: "completed", CallDuration: seconds }).catch(() => {});
    line("☎ " + (byCaller ? "you hung up" : "call ended"), "out");
    call = null;
    keypad.hidden = true;
    recording.hidden = true;
    dial.disabled = false;
    hangup.disabled = true;
    ringTimer = setInterval(ring, 5000); // a callback may ring this phone later
  }

  async function ring() {
    if (call) return;
    const data = await post({ ring: true }).catch(() => null);
    if (!data || !data.callback) return;
    clearInterval(ringTimer);
    if (!window.confirm("Incoming call from " + to.value + " (callback). Answer?")) return;
    call = { sid: data.callback.call_sid, direction: "outbound-api", started: Date.now(), hold: null };
    dial.disabled = true;
    hangup.disabled = false;
    line("☎ answering our callback", "out");
    await stepTo({ path: data.callback.path });
  }

  dial.addEventListener("click", async () => {
    clearInterval(ringTimer);
    log.replaceChildren();
    call = { sid: null, started: Date.now(), hold: null };
    dial.disabled = true;
    hangup.disabled = false;
    line("☎ calling " + to.value, "out");
    try { await stepTo({}); } catch (e) { line("⚠ " + e.message, "out"); }
  });
  hangup.addEventListener("click", () => end(true));
  keypad.addEventListener("click", async (event) => {
    const key = event.target.dataset && event.target.dataset.key;
    if (!key || !call || !call.next || call.next.kind !== "gather") return;
    stopTimers();
    line("⌨ " + key, "out");
    await stepTo({ path: call.next.action, digits: key });
  });
  document.getElementById("call-speech").addEventListener("submit", async (event) => {
    event.preventDefault();
    const said = document.getElementById("call-speech-text").value;
    if (!said || !call || !call.next || call.next.kind !== "gather") return;
    stopTimers();
    line("🗣 " + said, "out");
    await stepTo({ path: call.next.action, speech: said });
  });
  document.getElementById("call-silence").addEventListener("click", async () => {
    if (!call || !call.next || call.next.kind !== "gather" || call.hold) return;
    await stepTo({ path: call.next.action });
  });
  document.getElementById("call-recording-done").addEventListener("click", async () => {
    if (!call || call.next.kind !== "record") return;
    const seconds = Math.max(1, Math.round((Date.now() - call.started) / 1000) % 120);
    line("⏹ message left", "out");
    await stepTo({ path: call.next.action, record_callback: call.next.callback, seconds: seconds });
  });
})();
