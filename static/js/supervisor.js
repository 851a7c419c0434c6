// The supervisor's wallboard: kept live over /ws/supervisor/. The server renders the board
// (customer names escaped by Django's templates) and sends it whole on connect ("snapshot"), then
// only the rows that changed ("delta": each row's HTML replaces the element with its data-key),
// each frame with a version and a delta with the version it applies to ("base"). A delta whose
// base is not the version on screen means a frame was missed: the page asks for a fresh board.
// This file swaps the rows, keeps the wait clocks ticking and posts the interventions; it never
// builds HTML from data. After a drop it reconnects, and the server sends a fresh board first.
(function () {
  "use strict";

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var state = { version: 0, socket: null, retry: 0, skew: 0, conversation: null, agent: null };

  function setState(name) {
    var node = $("#wallboard-state");
    if (!node) return;
    node.setAttribute("data-state", name);
    node.textContent = node.getAttribute("data-" + name) || name;
  }

  function toast(text, kind) {
    var region = $("#toasts");
    if (!region) return;
    var item = document.createElement("div");
    item.className = "toast" + (kind ? " toast-" + kind : "");
    item.textContent = text;
    region.appendChild(item);
    setTimeout(function () { item.remove(); }, 5000);
  }

  function clock(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  // Durations run from the server's clock: the board says when it was read ("at").
  function tick() {
    var now = Date.now() - state.skew;
    $$("[data-ticking] .ticker[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) el.textContent = clock((now - since) / 1000);
    });
  }

  function adoptSkew(at) {
    var server = Date.parse(at);
    if (!isNaN(server)) state.skew = Date.now() - server;
  }

  function showBoard(frame) {
    if (frame.version <= state.version) return; // an older read: the newer one is on screen
    state.version = frame.version;
    var live = $("#wallboard-live");
    var template = document.createElement("template");
    template.innerHTML = frame.html.trim();
    var key = focusKey(live);
    live.replaceChildren(template.content);
    refocus(live, key);
    live.setAttribute("data-version", String(frame.version));
    if (frame.data && frame.data.at) adoptSkew(frame.data.at);
    tick();
  }

  // A row replaced under the keyboard's focus gives it to the same control in the new row (a
  // supervisor tabbing through the board must not be thrown back to the top by a change).
  function focusKey(root) {
    var active = document.activeElement;
    if (!active || !root.contains(active)) return null;
    var names = ["data-manage", "data-presence-agent"];
    for (var i = 0; i < names.length; i++) {
      if (active.hasAttribute(names[i])) return "[" + names[i] + '="' + CSS.escape(active.getAttribute(names[i])) + '"]';
    }
    return null;
  }

  function refocus(root, key) {
    if (!key) return;
    var again = root.querySelector(key);
    if (again) again.focus({ preventScroll: true });
  }

  function applyDelta(frame) {
    if (frame.version <= state.version) return; // older than what is on screen
    if (frame.base !== state.version) { // a frame went missing: start again from a whole board
      if (state.socket && state.socket.readyState === WebSocket.OPEN) {
        state.socket.send(JSON.stringify({ type: "refresh" }));
      }
      return;
    }
    var live = $("#wallboard-live");
    var missing = false;
    (frame.rows || []).forEach(function (row) {
      var current = live.querySelector('[data-key="' + CSS.escape(row.key) + '"]');
      if (!current) { missing = true; return; }
      // A <template> parses table rows and bodies where a <div> would drop them.
      var template = document.createElement("template");
      template.innerHTML = row.html.trim();
      var fresh = template.content.firstElementChild;
      if (!fresh) return;
      var key = focusKey(current);
      current.replaceWith(fresh);
      refocus(fresh, key);
    });
    if (missing) { // the page is not the board the server thinks: ask for it whole
      state.socket && state.socket.send(JSON.stringify({ type: "refresh" }));
      return;
    }
    state.version = frame.version;
    live.setAttribute("data-version", String(frame.version));
    if (frame.at) adoptSkew(frame.at);
    tick();
  }

  function connect() {
    var live = $("#wallboard-live");
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + live.getAttribute("data-socket"));
    state.socket = socket;
    socket.onopen = function () { state.retry = 0; state.version = 0; setState("live"); };
    socket.onmessage = function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame.type === "wallboard.snapshot") showBoard(frame);
      else if (frame.type === "wallboard.delta") applyDelta(frame);
    };
    socket.onclose = function (event) {
      state.socket = null;
      if (event.code === 4403) { setState("offline"); return; } // not (or no longer) a supervisor
      setState("offline");
      state.retry = Math.min(state.retry + 1, 6);
      setTimeout(connect, 500 * Math.pow(2, state.retry - 1));
    };
  }

  function csrfToken(form) {
    var input = $("input[name=csrfmiddlewaretoken]", form);
    return input ? input.value : "";
  }

  function openManage(button) {
    var dialog = $("#manage-dialog");
    var id = button.getAttribute("data-manage");
    state.conversation = id;
    $("[data-customer-name]", dialog).textContent = button.getAttribute("data-customer") || "";
    var link = $("[data-watch-link]", dialog);
    link.href = link.getAttribute("data-href-template").replace("/0/", "/" + id + "/");
    $$("form[data-intervention]", dialog).forEach(function (form) {
      form.action = form.getAttribute("data-action-template").replace("/0/", "/" + id + "/");
      form.reset();
    });
    $("[data-error]", dialog).textContent = "";
    dialog.showModal();
  }

  function openPresence(button) {
    var dialog = $("#presence-dialog");
    var form = $("form", dialog);
    form.action = form.getAttribute("data-action-template").replace("/0/", "/" + button.getAttribute("data-presence-agent") + "/");
    $("[data-agent-name]", dialog).textContent = button.getAttribute("data-agent-name") || "";
    $("[data-error]", dialog).textContent = "";
    dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    var manage = event.target.closest("[data-manage]");
    if (manage) { openManage(manage); return; }
    var presence = event.target.closest("[data-presence-agent]");
    if (presence) { openPresence(presence); return; }
    var closer = event.target.closest("#manage-dialog [data-close-dialog], #presence-dialog [data-close-dialog]");
    if (closer) closer.closest("dialog").close();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-intervention]");
    if (!form) return;
    event.preventDefault();
    var dialog = form.closest("dialog");
    var error = $("[data-error]", dialog);
    fetch(form.action, {
      method: "POST", credentials: "same-origin", body: new FormData(form),
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken(form) },
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (answer) {
      if (answer.body.login) { location.href = answer.body.login + "?next=" + encodeURIComponent(location.pathname); return; }
      if (!answer.ok) { error.textContent = answer.body.error || String(answer.status); return; }
      dialog.close();
      toast(answer.body.message || "OK");
    }).catch(function () {
      error.textContent = "—";
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var ticking = $("[data-ticking]");
    if (ticking) {
      adoptSkew(ticking.getAttribute("data-at") || ($(".wallboard", ticking) || ticking).getAttribute("data-at"));
      setInterval(tick, 1000);
    }
    var live = $("#wallboard-live");
    if (!live) return; // "my day" is read-only: its clocks tick, nothing else
    connect();
    setInterval(function () { if (state.socket && state.socket.readyState === 1) state.socket.send('{"type":"ping"}'); }, 25000);
  });

  window.ccWallboard = { state: state };
})();
