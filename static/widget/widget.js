/*
 * Contact-center web-chat widget. One tag on any site, no build step:
 *
 *   <script src="https://cc.example.com/static/widget/widget.js" data-widget="widget-main"
 *           data-locale="ja" async></script>
 *
 * Optional: data-user-id + data-user-signature (hex HMAC-SHA256 of the id with the inbox secret,
 * computed on the site's server) prove who the visitor is. Everything lives in a shadow root; every
 * customer or agent text is rendered with textContent, never as markup. No inline script or style:
 * the stylesheet is loaded from the same origin as this script.
 */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector('script[data-widget][src*="/widget/widget.js"]');
  if (!script || window.__ccWidgetLoaded) { return; }
  window.__ccWidgetLoaded = true;

  var STRINGS = {
    en: {
      open: "Chat with us", close: "Close", title: "Chat with us",
      online: "We are online. Ask us anything.", connecting: "Connecting…",
      reconnecting: "Connection lost. Reconnecting…",
      no_agent: "Nobody can chat right now. Leave a message and your email: we will reply by email.",
      closed: "We are closed right now. Leave a message and your email: we will reply by email.",
      placeholder: "Type your message…", send: "Send", name: "Name (optional)", email: "Email (optional)",
      email_required: "Your email", start: "Start chat", skip: "Skip", offline_text: "Your message",
      offline_send: "Send message", offline_done: "Thank you. We will reply by email.",
      typing: "{name} is typing…", agent: "Agent", you: "You",
      prechat_intro: "Tell us who you are (optional).",
      queue: "You are number {position} in the queue", queue_wait: " · about {minutes} min",
      follow_up_email: "We're closed now: we'll answer by email.", follow_up: "We're closed now: we'll answer here when we open.",
      end: "End chat", end_confirm: "End this chat? The agent will no longer see your messages here.",
      end_yes: "End chat", end_no: "Cancel", ended: "Chat ended. Send a message to start a new chat.",
      err_413: "That message is too long. Please shorten it.",
      err_429: "You are sending too fast. Please wait a moment.",
      err_400: "That could not be sent. Please check and try again.",
      err_bad_email: "Please enter a valid email address.",
      err_403: "This chat is not configured correctly for this site.",
      err_404: "Not found.", err_503: "Messages cannot be left right now. Please try later.",
      err_other: "Something went wrong. Please try again."
    },
    ja: {
      open: "チャットで問い合わせ", close: "閉じる", title: "チャットでお問い合わせ",
      online: "オペレーターが対応します。お気軽にどうぞ。", connecting: "接続しています…",
      reconnecting: "接続が切れました。再接続しています…",
      no_agent: "ただいま対応できるオペレーターがいません。メッセージとメールアドレスを残していただければ、メールでご返信します。",
      closed: "ただいま営業時間外です。メッセージとメールアドレスを残していただければ、メールでご返信します。",
      placeholder: "メッセージを入力…", send: "送信", name: "お名前（任意）", email: "メールアドレス（任意）",
      email_required: "メールアドレス", start: "チャットを始める", skip: "スキップ", offline_text: "お問い合わせ内容",
      offline_send: "送信する", offline_done: "ありがとうございました。メールでご返信します。",
      typing: "{name}が入力中…", agent: "担当者", you: "あなた",
      prechat_intro: "よろしければお名前とメールアドレスをご入力ください。",
      queue: "順番待ち：あなたは{position}番目です", queue_wait: " · 約{minutes}分",
      follow_up_email: "ただいま営業時間外です。メールでご返信します。", follow_up: "ただいま営業時間外です。営業開始後、こちらでご返信します。",
      end: "チャットを終了", end_confirm: "このチャットを終了しますか？",
      end_yes: "終了する", end_no: "キャンセル", ended: "チャットを終了しました。メッセージを送ると新しいチャットが始まります。",
      err_413: "メッセージが長すぎます。短くしてください。",
      err_429: "送信が速すぎます。少し待ってからお試しください。",
      err_400: "送信できませんでした。内容をご確認ください。",
      err_bad_email: "正しいメールアドレスを入力してください。",
      err_403: "このサイトではチャットが正しく設定されていません。",
      err_404: "見つかりません。", err_503: "現在メッセージを受け付けられません。後ほどお試しください。",
      err_other: "エラーが発生しました。もう一度お試しください。"
    }
  };

  var widgetKey = script.getAttribute("data-widget") || "";
  var userId = script.getAttribute("data-user-id") || "";
  var userSignature = script.getAttribute("data-user-signature") || "";
  var locale = (script.getAttribute("data-locale") || navigator.language || "en").slice(0, 2).toLowerCase();
  if (!STRINGS[locale]) { locale = "en"; }
  var T = STRINGS[locale];
  var scriptUrl = new URL(script.src, document.baseURI);
  var socketUrl = (scriptUrl.protocol === "https:" ? "wss://" : "ws://") + scriptUrl.host +
    "/ws/widget/?widget=" + encodeURIComponent(widgetKey);
  var cssUrl = new URL("widget.css", scriptUrl).href;

  // --- the visitor token (kept by the browser: survives reloads and tabs) ----------------------
  var memoryStore = {};
  function storeGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return memoryStore[key] || null; }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { memoryStore[key] = value; }
  }
  function randomToken() {
    var bytes = new Uint8Array(32);
    window.crypto.getRandomValues(bytes);
    var text = "";
    for (var i = 0; i < bytes.length; i++) { text += String.fromCharCode(bytes[i]); }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function uuid() {
    if (window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  // One token per signed-in user (or anonymous) so a shared browser never mixes two users.
  var tokenKey = "cc-widget:" + widgetKey + ":" + (userId || "anon");
  function visitorToken(renew) {
    var token = renew ? null : storeGet(tokenKey);
    if (!token || !/^[A-Za-z0-9_-]{32,128}$/.test(token)) {
      token = randomToken();
      storeSet(tokenKey, token);
    }
    return token;
  }

  // --- DOM (in a shadow root: the site's CSS cannot break it, ours cannot leak) ----------------
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  var host = el("div");
  host.setAttribute("data-cc-widget", widgetKey);
  var root = host.attachShadow({ mode: "open" });
  var link = el("link");
  link.rel = "stylesheet";
  link.href = cssUrl;
  root.appendChild(link);

  var launcher = el("button", "cc-launcher", T.open);
  launcher.type = "button";
  launcher.setAttribute("aria-expanded", "false");
  var panel = el("section", "cc-panel cc-hidden");
  panel.setAttribute("aria-label", T.title);
  panel.setAttribute("lang", locale);
  var header = el("header", "cc-header");
  header.appendChild(el("h2", "cc-title", T.title));
  var endButton = el("button", "cc-end cc-hidden", T.end);
  endButton.type = "button";
  header.appendChild(endButton);
  var closeButton = el("button", "cc-close", "×");
  closeButton.type = "button";
  closeButton.setAttribute("aria-label", T.close);
  header.appendChild(closeButton);
  var statusLine = el("p", "cc-status", T.connecting);
  statusLine.setAttribute("role", "status");
  var queueLine = el("p", "cc-queue cc-hidden");
  queueLine.setAttribute("role", "status");
  // "End chat" asks first: ending cannot be undone (the next message starts a new chat).
  var confirmBox = el("div", "cc-confirm cc-hidden");
  confirmBox.setAttribute("role", "alertdialog");
  var confirmText = el("p", "cc-confirm-text", T.end_confirm);
  confirmBox.appendChild(confirmText);
  var confirmButtons = el("div", "cc-buttons");
  var confirmNo = el("button", "cc-secondary", T.end_no);
  confirmNo.type = "button";
  var confirmYes = el("button", "cc-primary cc-danger", T.end_yes);
  confirmYes.type = "button";
  confirmButtons.appendChild(confirmNo);
  confirmButtons.appendChild(confirmYes);
  confirmBox.appendChild(confirmButtons);
  var list = el("ol", "cc-messages");
  list.setAttribute("role", "log");
  list.setAttribute("aria-live", "polite");
  var typingLine = el("p", "cc-typing cc-hidden");
  var errorLine = el("p", "cc-error cc-hidden");
  errorLine.setAttribute("role", "alert");

  function field(labelText, input) {
    var label = el("label", "cc-field");
    label.appendChild(el("span", "cc-label", labelText));
    label.appendChild(input);
    return label;
  }
  function input(type, maxLength, required) {
    var node = el("input");
    node.type = type;
    node.maxLength = maxLength;
    node.required = !!required;
    return node;
  }

  var prechat = el("form", "cc-form cc-hidden");
  prechat.noValidate = true;
  var prechatName = input("text", 100);
  var prechatEmail = input("email", 320);
  prechat.appendChild(el("p", "cc-intro", T.prechat_intro));
  prechat.appendChild(field(T.name, prechatName));
  prechat.appendChild(field(T.email, prechatEmail));
  var prechatButtons = el("div", "cc-buttons");
  var prechatSkip = el("button", "cc-secondary", T.skip);
  prechatSkip.type = "button";
  var prechatStart = el("button", "cc-primary", T.start);
  prechatStart.type = "submit";
  prechatButtons.appendChild(prechatSkip);
  prechatButtons.appendChild(prechatStart);
  prechat.appendChild(prechatButtons);

  var offline = el("form", "cc-form cc-hidden");
  offline.noValidate = true;
  var offlineEmail = input("email", 320, true);
  var offlineText = el("textarea");
  offlineText.maxLength = 4000;
  offlineText.rows = 4;
  offlineText.required = true;
  offline.appendChild(field(T.email_required, offlineEmail));
  offline.appendChild(field(T.offline_text, offlineText));
  var offlineSend = el("button", "cc-primary", T.offline_send);
  offlineSend.type = "submit";
  offline.appendChild(offlineSend);

  var composer = el("form", "cc-composer cc-hidden");
  var textbox = el("textarea");
  textbox.rows = 2;
  textbox.maxLength = 4000;
  textbox.placeholder = T.placeholder;
  textbox.setAttribute("aria-label", T.placeholder);
  textbox.setAttribute("dir", "auto");
  var sendButton = el("button", "cc-primary", T.send);
  sendButton.type = "submit";
  composer.appendChild(textbox);
  composer.appendChild(sendButton);

  [header, statusLine, queueLine, confirmBox, list, typingLine, errorLine, prechat, offline, composer].forEach(function (n) {
    panel.appendChild(n);
  });
  root.appendChild(panel);
  root.appendChild(launcher);
  function mount() { document.body.appendChild(host); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }

  function show(node, visible) { node.classList.toggle("cc-hidden", !visible); }

  // --- state ---------------------------------------------------------------------------------
  var socket = null;
  var attempt = 0;
  var stopped = false;
  var ready = false;
  var online = null;
  var messages = {};      // server id -> rendered
  var pending = {};       // client id -> {text, node}; resent (idempotently) after a reconnect
  var conversations = [];
  var prechatDone = storeGet(tokenKey + ":prechat") === "1" || !!userId;
  var typingTimer = null;
  var typingSentAt = 0;
  var queueTimer = null;  // polls the queue position while the conversation waits for an agent
  var QUEUE_POLL_MS = 20000;
  var endedKey = tokenKey + ":ended";
  // Conversations up to this id were ended by the visitor: a fresh chat does not show them again.
  var endedUpTo = parseInt(storeGet(endedKey) || "0", 10) || 0;

  function renderMessage(frame) {
    var item = el("li", "cc-message " + (frame.from === "agent" ? "cc-agent" : "cc-visitor"));
    var author = frame.from === "agent" ? (frame.author || T.agent) : T.you;
    item.appendChild(el("span", "cc-author", author));
    var body = el("div", "cc-text", frame.text);  // textContent: markup stays text
    body.setAttribute("dir", "auto");              // bidi text is isolated, never reorders the UI
    item.appendChild(body);
    if (frame.at) {
      var when = el("time", "cc-time", new Date(frame.at).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" }));
      when.dateTime = frame.at;
      item.appendChild(when);
    }
    return item;
  }
  function addMessage(frame) {
    if (messages[frame.id]) { return; }
    if (frame.client_id && pending[frame.client_id]) {
      var stale = pending[frame.client_id].node;
      if (stale && stale.parentNode) { stale.parentNode.removeChild(stale); }
      delete pending[frame.client_id];
    }
    var node = renderMessage(frame);
    messages[frame.id] = node;
    list.appendChild(node);
    if (frame.conversation && conversations.indexOf(frame.conversation) < 0) { conversations.push(frame.conversation); }
    list.scrollTop = list.scrollHeight;
    if (frame.from === "agent") { show(typingLine, false); }
  }

  // --- queue position --------------------------------------------------------------------------
  function renderQueue(frame) {
    if (frame.follow_up) {  // after hours: no live line to stand in, say where the answer will come
      queueLine.textContent = frame.follow_up === "email" ? T.follow_up_email : T.follow_up;
      show(queueLine, true);
      return;
    }
    if (frame.position === null || frame.position === undefined) { show(queueLine, false); return; }
    var text = T.queue.replace("{position}", String(frame.position));
    var seconds = frame.estimated_wait_seconds;
    if (typeof seconds === "number") {
      text += T.queue_wait.replace("{minutes}", String(Math.max(1, Math.round(seconds / 60))));
    }
    queueLine.textContent = text;
    show(queueLine, true);
  }
  function stopQueue() {
    window.clearTimeout(queueTimer);
    queueTimer = null;
    show(queueLine, false);
  }
  function scheduleQueue(delay) {
    window.clearTimeout(queueTimer);
    queueTimer = window.setTimeout(function () {
      queueTimer = null;
      send({ type: "queue" });
      scheduleQueue(QUEUE_POLL_MS);  // the answer stops the polling once nobody waits any more
    }, delay);
  }
  function renderPending() {
    Object.keys(pending).forEach(function (id) {
      var node = renderMessage({ from: "visitor", text: pending[id].text });
      node.classList.add("cc-pending");
      pending[id].node = node;
      list.appendChild(node);
    });
  }
  function showError(code, reason) {
    var text = T["err_" + reason] || T["err_" + code] || T.err_other;
    errorLine.textContent = text;
    show(errorLine, true);
    window.setTimeout(function () { show(errorLine, false); }, 6000);
  }
  function updateForms() {
    var hasHistory = conversations.length > 0 || Object.keys(pending).length > 0;
    var offlineMode = online === false;
    statusLine.textContent = !ready ? (attempt ? T.reconnecting : T.connecting)
      : online ? T.online : T[offlineReason] || T.no_agent;
    show(offline, ready && offlineMode);
    show(prechat, ready && !offlineMode && !prechatDone && !hasHistory);
    show(composer, ready && !offlineMode && (prechatDone || hasHistory));
    show(endButton, ready && conversations.length > 0);
    if (!conversations.length) { show(confirmBox, false); }
  }
  var offlineReason = "no_agent";

  // --- socket --------------------------------------------------------------------------------
  function send(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); return true; }
    return false;
  }
  function connect(renewToken) {
    if (stopped) { return; }
    var token = visitorToken(renewToken);
    socket = new WebSocket(socketUrl);
    socket.onopen = function () {
      var hello = { type: "hello", widget: widgetKey, token: token, locale: locale };
      // The customer's own language routes their chat (a Japanese-speaking team, say), and the
      // site may have fixed the display locale: the browser's setting, checked on the server.
      if (typeof navigator.language === "string" && navigator.language) { hello.language = navigator.language; }
      if (userId && userSignature) { hello.user = { id: userId, signature: userSignature }; }
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handle(frame);
    };
    socket.onclose = function (event) {
      ready = false;
      socket = null;
      if (event.code === 4409) { connect(true); return; }        // token of another user: new token
      if (event.code === 4403 || event.code === 4400) { stopped = true; updateForms(); return; }
      attempt += 1;
      updateForms();
      var delay = Math.min(30000, 500 * Math.pow(2, Math.min(attempt, 6))) + Math.random() * 500;
      window.setTimeout(function () { connect(false); }, delay);
    };
  }
  function handle(frame) {
    switch (frame.type) {
      case "history":
        // The database is the truth: after every (re)connect the list is rebuilt from the server.
        attempt = 0;
        ready = true;
        while (list.firstChild) { list.removeChild(list.firstChild); }
        messages = {};
        conversations = (frame.conversations || []).filter(function (id) { return id > endedUpTo; });
        var shown = (frame.messages || []).filter(function (m) { return !(m.conversation <= endedUpTo); });
        shown.forEach(addMessage);
        renderPending();
        // The last word is the visitor's: they may be waiting in a queue; the answer tells.
        if (shown.length && shown[shown.length - 1].from === "visitor") { scheduleQueue(0); } else { stopQueue(); }
        Object.keys(pending).forEach(function (id) { send({ type: "message", id: id, text: pending[id].text }); });
        updateForms();
        break;
      case "status":
        online = !!frame.online;
        offlineReason = frame.reason === "closed" ? "closed" : "no_agent";
        updateForms();
        break;
      case "message":
        addMessage(frame);
        if (frame.from === "agent") { stopQueue(); }  // an agent is here: no more queue position
        updateForms();
        break;
      case "queue":
        renderQueue(frame);
        if (frame.waiting === false) { stopQueue(); } else if (!queueTimer) { scheduleQueue(QUEUE_POLL_MS); }
        break;
      case "ended":
        // Every tab of the visitor clears; the next message starts a new conversation.
        if (typeof frame.conversation === "number" && frame.conversation > endedUpTo) {
          endedUpTo = frame.conversation;
          storeSet(endedKey, String(endedUpTo));
        }
        stopQueue();
        show(confirmBox, false);
        show(typingLine, false);
        while (list.firstChild) { list.removeChild(list.firstChild); }
        messages = {};
        conversations = [];
        list.appendChild(el("li", "cc-notice", T.ended));
        renderPending();
        updateForms();
        break;
      case "typing":
        typingLine.textContent = T.typing.replace("{name}", frame.name || T.agent);
        show(typingLine, !!frame.on);
        break;
      case "offline_message":
        offline.reset();
        statusLine.textContent = T.offline_done;
        break;
      case "error":
        if (frame.code === 413 || frame.code === 400) {
          // Refused for good: drop the pending copy so it is not resent forever.
          Object.keys(pending).forEach(function (id) {
            if (pending[id].node && pending[id].node.parentNode) { pending[id].node.parentNode.removeChild(pending[id].node); }
          });
          pending = {};
        }
        showError(frame.code, frame.reason);
        break;
      default:
        break;
    }
  }

  // --- UI events -----------------------------------------------------------------------------
  launcher.addEventListener("click", function () {
    var opening = panel.classList.contains("cc-hidden");
    show(panel, opening);
    launcher.setAttribute("aria-expanded", opening ? "true" : "false");
    if (opening && !socket && !stopped) { connect(false); }
    if (opening) { send({ type: "status" }); textbox.focus(); }
  });
  closeButton.addEventListener("click", function () {
    show(panel, false);
    launcher.setAttribute("aria-expanded", "false");
  });
  prechat.addEventListener("submit", function (event) {
    event.preventDefault();
    send({ type: "prechat", name: prechatName.value, email: prechatEmail.value });
    prechatDone = true;
    storeSet(tokenKey + ":prechat", "1");
    updateForms();
  });
  prechatSkip.addEventListener("click", function () {
    prechatDone = true;
    storeSet(tokenKey + ":prechat", "1");
    updateForms();
  });
  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = textbox.value.trim();
    if (!text) { return; }
    var id = uuid();
    pending[id] = { text: text, node: null };
    var node = renderMessage({ from: "visitor", text: text });
    node.classList.add("cc-pending");
    pending[id].node = node;
    list.appendChild(node);
    list.scrollTop = list.scrollHeight;
    textbox.value = "";
    send({ type: "typing", on: false });
    send({ type: "message", id: id, text: text });  // resent with the same id after a reconnect
    scheduleQueue(3000);  // routing runs on the server: ask shortly where this chat stands
  });
  endButton.addEventListener("click", function () {
    show(confirmBox, confirmBox.classList.contains("cc-hidden"));
    if (!confirmBox.classList.contains("cc-hidden")) { confirmNo.focus(); }
  });
  confirmNo.addEventListener("click", function () {
    show(confirmBox, false);
    endButton.focus();
  });
  confirmYes.addEventListener("click", function () {
    if (send({ type: "end" })) { show(confirmBox, false); } else { showError(0, "other"); }
  });
  textbox.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit ? composer.requestSubmit() : composer.dispatchEvent(new Event("submit"));
    }
  });
  textbox.addEventListener("input", function () {
    if (!conversations.length) { return; }
    var now = Date.now();
    if (now - typingSentAt > 3000) { typingSentAt = now; send({ type: "typing", on: true }); }
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(function () { typingSentAt = 0; send({ type: "typing", on: false }); }, 5000);
  });
  offline.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!offlineEmail.value || !offlineText.value.trim()) { showError(400, "bad_email"); return; }
    send({ type: "offline_message", id: uuid(), email: offlineEmail.value, text: offlineText.value,
           name: prechatName.value });
  });

  // Connect at once when the visitor already has a conversation (agent replies arrive live),
  // otherwise on first open.
  if (storeGet(tokenKey)) { connect(false); }
})();
