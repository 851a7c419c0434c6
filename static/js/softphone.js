// The console's softphone: rings for voice offers, answers, and drives the call through the
// server's controls (/console/softphone/…), which ask Twilio (or, without credentials, record the
// request). The call's state always comes from the server (the control's answer and the
// ``conversation.call`` events on the console's socket), so every tab and every reload shows the
// same thing. With a real token the Twilio Voice SDK carries the audio; without one a small fake
// device stands in for it: no audio, every state and control the same.
(function () {
  "use strict";

  var panel, strings = {};
  var state = {
    mode: "simulated", agent: null, device: null, media: null, incoming: null, expecting: null,
    view: null, ringingOffer: null, muted: false, digits: "", timer: null,
  };

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function t(key, values) {
    var text = strings[key] || key;
    Object.keys(values || {}).forEach(function (name) { text = text.split("{" + name + "}").join(values[name]); });
    return text;
  }
  function csrfToken() {
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var input = $("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function isMe(id) { return id != null && String(id) === String(state.agent); }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); });
  }

  function post(url, data) {
    // Form-encoded, not FormData: an empty multipart body is a 400 for Django's parser.
    var body = new URLSearchParams();
    Object.keys(data || {}).forEach(function (key) { body.append(key, data[key]); });
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
    }).then(function (r) {
      return r.json().catch(function () { return { error: t("failed") + " (" + r.status + ")" }; });
    });
  }

  function showError(text) {
    var box = $("[data-softphone-error]", panel);
    box.textContent = text || "";
  }

  // --- the device: Twilio's, or the fake one ---------------------------------------------------------------

  // Without a token: the same surface as a Twilio Call for what the panel uses. The server
  // recorded the control; the fake only remembers what a real call would do locally.
  function FakeCall() { this.muted = false; this.sent = ""; }
  FakeCall.prototype.mute = function (on) { this.muted = !!on; };
  FakeCall.prototype.isMuted = function () { return this.muted; };
  FakeCall.prototype.sendDigits = function (digits) { this.sent += digits; };
  FakeCall.prototype.disconnect = function () {};
  FakeCall.prototype.accept = function () {};

  function loadSdk(src) {
    return new Promise(function (resolve, reject) {
      if (window.Twilio && window.Twilio.Device) { resolve(); return; }
      var script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }

  function startLiveDevice(config) {
    return loadSdk(config.sdk).then(function () {
      var device = new window.Twilio.Device(config.token, { closeProtection: true });
      // The page says what rings (the panel); the SDK's own sounds are not loaded (the page's CSP
      // allows no media from elsewhere).
      if (device.audio) { device.audio.incoming(false); device.audio.outgoing(false); device.audio.disconnect(false); }
      device.on("incoming", function (call) {
        call.on("disconnect", function () {
          if (state.media === call) state.media = null;
          if (state.incoming === call) { state.incoming = null; render(); }
        });
        if (state.expecting != null) {
          // Our server added this leg to the conference because the agent pressed Answer.
          state.expecting = null;
          state.media = call;
          call.accept();
        } else {
          // A colleague asks this agent in (warm transfer): they answer it themselves.
          state.incoming = call;
          render();
        }
      });
      device.on("tokenWillExpire", function () {
        getJSON(panel.getAttribute("data-token-url")).then(function (fresh) {
          if (fresh.token) device.updateToken(fresh.token);
        });
      });
      device.on("error", function (error) { showError(error && error.message); });
      device.register();
      state.device = device;
    }).catch(function () {
      // The SDK did not load: controls still work on the server side, without audio here.
      state.mode = "simulated";
      $("[data-softphone-mode]", panel).hidden = false;
    });
  }

  function media() {
    if (state.mode !== "live") {
      if (!state.media) state.media = new FakeCall();
    }
    return state.media;
  }

  // --- rendering ----------------------------------------------------------------------------------------

  function durationText(seconds) {
    seconds = Math.max(0, Math.round(seconds || 0));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function tick() {
    var line = $("[data-softphone-timer]", panel);
    var call = state.view && state.view.call;
    if (!call || !call.connected_at || ["connected", "held", "consulting", "conference"].indexOf(call.state) < 0) {
      line.hidden = true;
      return;
    }
    line.hidden = false;
    line.textContent = durationText((Date.now() - Date.parse(call.connected_at)) / 1000);
  }

  function colleagueName(view) {
    var id = view.call && view.call.consult_agent;
    var agents = (view.targets && view.targets.agents) || [];
    for (var i = 0; i < agents.length; i++) if (String(agents[i].id) === String(id)) return agents[i].name;
    return view.colleague_name || "";
  }

  function visible(names) {
    $$(".softphone-controls [data-call]", panel).forEach(function (button) {
      button.hidden = names.indexOf(button.getAttribute("data-call")) < 0;
    });
    if (names.indexOf("keypad") < 0) toggle("keypad", false);
    if (names.indexOf("transfer") < 0) toggle("transfer", false);
  }

  function render() {
    var view = state.view;
    var call = view && view.call;
    var name = view ? view.customer_name || "" : "";
    var status = $("#softphone-status");
    var caller = $("[data-softphone-caller]", panel);
    var mine = call && isMe(call.agent);
    if (!view || !call || call.state === "none") {
      status.textContent = t("ready");
      caller.hidden = true;
      visible([]);
      tick();
      return;
    }
    caller.hidden = !view.url;
    var link = $("[data-softphone-customer]", panel);
    link.textContent = name;
    if (view.url) link.setAttribute("href", view.url);
    var ivr = $("[data-softphone-ivr]", panel);
    ivr.textContent = "";
    (call.ivr || []).forEach(function (choice) {
      var li = document.createElement("li");
      li.className = "tag";
      li.textContent = typeof choice === "string" ? choice : (choice.label || choice.digits || choice.speech || "");
      ivr.appendChild(li);
    });
    var values = { name: name, colleague: colleagueName(view), duration: durationText(call.duration_seconds) };
    if (call.state === "waiting") {
      // Offered to this agent, or theirs already (accepted from the work list, transferred to them).
      var forMe = state.ringingOffer != null || isMe(view.assignee);
      status.textContent = forMe ? t("ringing", values) : t("ready");
      visible(forMe ? ["answer"] : []);
    } else if (!mine && isMe(call.consult_agent)) {
      status.textContent = t("consulted", { colleague: view.from_name || "" });
      visible(state.incoming ? ["answer"] : state.media ? ["mute"] : []);
    } else if (!mine) {
      status.textContent = t("ready");
      caller.hidden = true;
      visible([]);
    } else if (call.state === "connected") {
      status.textContent = t("connected", values);
      visible(["mute", "hold", "keypad", "transfer", "hangup"]);
    } else if (call.state === "held") {
      status.textContent = t("held", values);
      visible(["mute", "resume", "keypad", "transfer", "hangup"]);
    } else if (call.state === "consulting") {
      status.textContent = t("consulting", values);
      visible(["mute", "join", "leave", "hangup"]);
    } else if (call.state === "conference") {
      status.textContent = t("conference", values);
      visible(["mute", "leave", "hangup"]);
    } else if (call.state === "ended") {
      status.textContent = t("ended", values);
      visible(view.status === "resolved" ? [] : ["wrapup"]);
    }
    var mute = $("[data-call=mute]", panel);
    mute.setAttribute("aria-pressed", state.muted ? "true" : "false");
    mute.textContent = state.muted ? t("muted") : mute.getAttribute("data-label");
    tick();
  }

  function show(view) {
    var previous = state.view && state.view.call;
    if (view.call && previous && view.conversation === state.view.conversation) {
      view.from_name = view.from_name || state.view.from_name;
      view.customer_name = view.customer_name || state.view.customer_name;
      view.targets = view.targets || state.view.targets;
      view.url = view.url || state.view.url;
    }
    if (view.call && view.call.state !== "waiting") state.ringingOffer = null;
    if (view.call && (view.call.state === "ended" || view.call.state === "none")) {
      state.muted = false;
      if (state.media) { try { state.media.disconnect(); } catch (e) { /* already gone */ } }
      state.media = null;
    }
    state.view = view;
    panel.hidden = false;
    fillTargets(view.targets);
    render();
  }

  function fillTargets(targets) {
    if (!targets) return;
    var select = $("#softphone-target");
    var keep = select.value;
    $$("optgroup", select).forEach(function (group) { group.remove(); });
    [["agents", "agent"], ["queues", "queue"]].forEach(function (pair) {
      var group = document.createElement("optgroup");
      group.label = t(pair[0]);
      (targets[pair[0]] || []).forEach(function (item) {
        var option = document.createElement("option");
        option.value = pair[1] + ":" + item.id;
        option.textContent = item.name + (item.presence ? " · " + item.presence : "");
        group.appendChild(option);
      });
      select.appendChild(group);
    });
    select.value = keep;
  }

  function toggle(which, open) {
    var button = $("[data-call=" + which + "]", panel);
    var box = $(which === "keypad" ? "#softphone-keypad" : "#softphone-transfer");
    box.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  // --- controls -----------------------------------------------------------------------------------------

  function control(name, data) {
    var view = state.view;
    if (!view) return Promise.resolve();
    showError("");
    if (name === "answer") state.expecting = view.conversation;
    return post(panel.getAttribute("data-base-url") + view.conversation + "/" + name + "/", data).then(function (answer) {
      if (answer.error) { showError(answer.error); return; }
      if (name === "answer" && state.mode !== "live") state.media = new FakeCall();
      if (name === "hangup" && state.media) { try { state.media.disconnect(); } catch (e) { /* gone */ } }
      show(answer);
      if (name === "answer") openConversation(answer.url);
    }).catch(function () { showError(t("failed")); });
  }

  // Screen pop: the conversation (the caller's whole timeline and 360) opens in the console.
  function openConversation(url) {
    if (!url || location.pathname === url) return;
    var link = $("[data-softphone-customer]", panel);
    link.setAttribute("href", url);
    link.click();
  }

  function onClick(event) {
    var digit = event.target.closest("[data-digit]");
    if (digit && panel.contains(digit)) {
      var key = digit.getAttribute("data-digit");
      var call = media();
      if (call) call.sendDigits(key);
      state.digits = (state.digits + key).slice(-24);
      $("[data-softphone-digits]", panel).textContent = state.digits;
      return;
    }
    var button = event.target.closest("[data-call]");
    if (!button || !panel.contains(button)) return;
    var name = button.getAttribute("data-call");
    if (name === "mute") {
      state.muted = !state.muted;
      var current = media();
      if (current) current.mute(state.muted);
      render();
    } else if (name === "keypad" || name === "transfer") {
      toggle(name, button.getAttribute("aria-expanded") !== "true");
      if (name === "transfer") $("#softphone-target").focus();
    } else if (name === "consult") {
      var target = $("#softphone-target").value;
      if (target.indexOf("agent:") !== 0) { showError(t("choose_agent")); return; }
      control("consult", { agent: target.slice(6) });
    } else if (name === "leave") {
      control("leave", { note: $("#softphone-note").value });
    } else if (name === "wrapup") {
      var resolve = document.querySelector('[data-open-dialog="resolve-dialog"]');
      if (resolve && state.view && location.pathname === state.view.url) resolve.click();
      else openConversation(state.view && state.view.url);
    } else if (name === "answer" && state.incoming) {
      // The consult leg rings in this browser: taking it is local, the server already placed it.
      state.media = state.incoming;
      state.incoming = null;
      state.media.accept();
      render();
    } else {
      control(name);
    }
  }

  // The conversation's own Transfer (its head) on the call this agent is on moves the call too:
  // the same control as the panel's, so the caller is never left talking to nobody.
  function onCallOpenHere() {
    var view = state.view, call = view && view.call;
    return !!(call && isMe(call.agent) && ["connected", "held"].indexOf(call.state) >= 0 &&
              location.pathname === view.url);
  }

  function onSubmit(event) {
    var form = event.target;
    if (form.matches && form.matches("#transfer-dialog form[data-action=transfer]") && onCallOpenHere()) {
      event.preventDefault();
      event.stopPropagation();
      var dialog = form.closest("dialog");
      control("transfer", { target: form.querySelector("[name=target]").value,
                            note: form.querySelector("[name=note]").value })
        .then(function () { if (dialog && !$("[data-softphone-error]", panel).textContent) dialog.close(); });
      return;
    }
    if (form.id === "softphone-transfer") {
      event.preventDefault();
      control("transfer", { target: $("#softphone-target").value, note: $("#softphone-note").value });
    } else if (form.hasAttribute && form.hasAttribute("data-softphone-settings")) {
      event.preventDefault();
      post(form.action, { answer_on: (form.querySelector("input[name=answer_on]:checked") || {}).value || "",
                          phone: form.querySelector("input[name=phone]").value })
        .then(function (answer) { showError(answer.error || ""); if (!answer.error) form.closest("details").open = false; });
    } else if (form.hasAttribute && form.hasAttribute("data-softphone-call")) {
      // Click-to-call from the customer 360: refused in words (opted out, their calling hours).
      event.preventDefault();
      panel.hidden = false;
      post(form.action, {}).then(function (answer) {
        if (answer.error) { showError(answer.error); return; }
        show(answer);
        $("#softphone-status").textContent = t("calling", { name: answer.customer_name });
        openConversation(answer.url);
      });
    }
  }

  // --- live events ----------------------------------------------------------------------------------------

  function onConsoleEvent(event) {
    var e = event.detail || {};
    var type = e.type || "";
    if (type === "offer.created" && e.channel === "voice" && isMe(e.agent)) {
      ring(e.conversation, e.offer);
    } else if (type.indexOf("offer.") === 0 && type !== "offer.created" && state.ringingOffer != null &&
               String(e.offer) === String(state.ringingOffer)) {
      state.ringingOffer = null;
      if (type !== "offer.accepted") { state.view = null; render(); }
    } else if (type === "conversation.call" && e.call) {
      var concerned = isMe(e.call.agent) || isMe(e.call.consult_agent) || isMe(e.assignee) ||
        (state.view && String(state.view.conversation) === String(e.conversation));
      if (!concerned) return;
      var view = { conversation: e.conversation, customer: e.customer, status: e.status, assignee: e.assignee,
                   call: e.call };
      if (isMe(e.call.consult_agent) && !isMe(e.call.agent)) view.from_name = e.from_name || "";
      view.colleague_name = e.call.consult_agent_name || "";
      var sameCall = state.view && String(state.view.conversation) === String(e.conversation);
      if (sameCall) {
        show(view);
        // A colleague who was asked in (and could not read the conversation) has it now.
        if (!state.view.customer_name && isMe(e.assignee)) {
          getJSON(panel.getAttribute("data-base-url") + e.conversation + "/").then(show).catch(function () {});
        }
      }
      else {
        // A call new to this page (a transfer to me, a colleague asking me in): its details.
        state.view = view;
        show(view);
        getJSON(panel.getAttribute("data-base-url") + e.conversation + "/").then(show).catch(function () {});
      }
    } else if (type === "conversation.resolved" && state.view && String(e.conversation) === String(state.view.conversation)) {
      state.view = null;
      render();
    }
  }

  function ring(conversationId, offerId) {
    state.ringingOffer = offerId;
    getJSON(panel.getAttribute("data-base-url") + conversationId + "/").then(function (view) {
      show(view);
      // Screen pop: the caller's customer 360 and timeline open while it rings.
      openConversation(view.url);
    }).catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    panel = document.getElementById("softphone");
    var workspace = document.getElementById("workspace");
    if (!panel || !workspace) return;
    var stringsNode = document.getElementById("softphone-strings");
    if (stringsNode) strings = JSON.parse(stringsNode.textContent || "{}");
    state.agent = workspace.getAttribute("data-agent") || null;
    var mute = $("[data-call=mute]", panel);
    mute.setAttribute("data-label", mute.textContent);
    getJSON(panel.getAttribute("data-token-url")).then(function (config) {
      if (!config.enabled) return; // no voice line: no phone in the console
      state.mode = config.mode;
      panel.hidden = false;
      document.body.classList.add("has-softphone");
      if (window.ResizeObserver) {
        new ResizeObserver(function () {
          document.body.style.setProperty("--softphone-height", panel.offsetHeight + "px");
        }).observe(panel);
      }
      $("[data-softphone-mode]", panel).hidden = config.mode === "live";
      panel.addEventListener("click", onClick);
      document.addEventListener("submit", onSubmit, true);
      document.addEventListener("cc:console-event", onConsoleEvent);
      state.timer = setInterval(tick, 1000);
      if (config.mode === "live") startLiveDevice(config);
      return getJSON(panel.getAttribute("data-current-url")).then(function (current) {
        if (current.call) show(current.call);
        else render();
      });
    }).catch(function () { /* not an agent, or signed out: no phone */ });
  });

  // For tests and the curious.
  window.ccSoftphone = { state: state };
})();
