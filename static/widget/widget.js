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
      messages: "Messages", joined: "{name} joined the chat.",
      sending: "Sending…", not_sent: "Not sent.", retry: "Retry", discard: "Discard",
      unread_one: "1 unread reply", unread_many: "{count} unread replies",
      new_reply: "New reply from {name}.",
      end_yes: "End chat", end_no: "Cancel", ended: "Chat ended. Send a message to start a new chat.",
      err_413: "That message is too long. Please shorten it.",
      err_429: "Too many messages right now. Wait a moment, then press Retry.",
      err_400: "That could not be sent. Please check and try again.",
      err_bad_email: "Please enter a valid email address.",
      err_403: "This chat is not configured correctly for this site.",
      err_404: "Not found.", err_503: "Messages cannot be left right now. Please try later.",
      err_other: "Something went wrong. Please try again.",
      too_many_tabs: "This chat is open in too many tabs or windows, so it was closed here. Close some of them, then reload this page to chat here.",
      survey_title: "Rate this chat", survey_comment: "Anything to add? (optional)", survey_send: "Send rating",
      survey_pick: "Choose a score first.", survey_scale: "{min} = {min_label}, {max} = {max_label}"
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
      end: "チャットを終了", end_confirm: "このチャットを終了しますか？担当者はここでのメッセージを見られなくなります。",
      messages: "メッセージ", joined: "{name}が参加しました。",
      sending: "送信中…", not_sent: "送信されていません。", retry: "再送", discard: "破棄",
      unread_one: "未読の返信が1件あります", unread_many: "未読の返信が{count}件あります",
      new_reply: "{name}から新しい返信があります。",
      end_yes: "終了する", end_no: "キャンセル", ended: "チャットを終了しました。メッセージを送ると新しいチャットが始まります。",
      err_413: "メッセージが長すぎます。短くしてください。",
      err_429: "ただいま送信が集中しています。少し待ってから「再送」を押してください。",
      too_many_tabs: "このチャットを開いているタブやウィンドウが多すぎるため、ここでは閉じました。いくつか閉じてから、このページを再読み込みしてください。",
      err_400: "送信できませんでした。内容をご確認ください。",
      err_bad_email: "正しいメールアドレスを入力してください。",
      err_403: "このサイトではチャットが正しく設定されていません。",
      err_404: "見つかりません。", err_503: "現在メッセージを受け付けられません。後ほどお試しください。",
      err_other: "エラーが発生しました。もう一度お試しください。",
      survey_title: "このチャットの評価", survey_comment: "ほかにお伝えしたいこと（任意）", survey_send: "評価を送信",
      survey_pick: "先にスコアをお選びください。", survey_scale: "{min}＝{min_label}、{max}＝{max_label}"
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
  // Per tab (survive a reload, not a new tab): unsent drafts, whether the panel is open, its scroll.
  function sessionGet(key) {
    try { return window.sessionStorage.getItem(key); } catch (e) { return memoryStore["s:" + key] || null; }
  }
  function sessionSet(key, value) {
    try { window.sessionStorage.setItem(key, value); } catch (e) { memoryStore["s:" + key] = value; }
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

  var launcher = el("button", "cc-launcher");
  launcher.type = "button";
  launcher.setAttribute("aria-expanded", "false");
  launcher.appendChild(el("span", "cc-launcher-text", T.open));
  var unreadBadge = el("span", "cc-badge cc-hidden");
  unreadBadge.setAttribute("aria-hidden", "true");  // the launcher's name says it in words
  launcher.appendChild(unreadBadge);
  // Announces unread replies while the panel is closed (the log inside it is hidden then).
  var announcer = el("p", "cc-sr-only");
  announcer.setAttribute("role", "status");
  var panel = el("section", "cc-panel cc-hidden");
  panel.id = "cc-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", T.title);
  panel.setAttribute("lang", locale);
  panel.tabIndex = -1;
  launcher.setAttribute("aria-controls", panel.id);
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
  // The log is a region around a real list (role=log on the <ol> itself orphans its items).
  var logBox = el("div", "cc-messages");
  logBox.setAttribute("role", "log");
  logBox.setAttribute("aria-live", "polite");
  logBox.setAttribute("aria-label", T.messages);
  logBox.tabIndex = 0;  // scrollable: reachable and scrollable by keyboard
  var list = el("ol", "cc-list");
  logBox.appendChild(list);
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

  // The rating card after the chat (a "survey" frame): a real form, a radio group with a legend,
  // usable by keyboard and screen reader; answered in place ("survey_answer"), thanked in place.
  var surveyBox = el("form", "cc-survey cc-hidden");
  surveyBox.noValidate = true;
  surveyBox.setAttribute("aria-label", T.survey_title);
  var surveyToken = null;
  function renderSurvey(frame) {
    if (typeof frame.survey !== "string" || typeof frame.min !== "number" || typeof frame.max !== "number") { return; }
    if (frame.max - frame.min > 10 || frame.max < frame.min) { return; }
    surveyToken = frame.survey;
    while (surveyBox.firstChild) { surveyBox.removeChild(surveyBox.firstChild); }
    var fieldset = el("fieldset", "cc-survey-scale");
    fieldset.appendChild(el("legend", "cc-survey-question", frame.question || T.survey_title));
    var hint = el("p", "cc-survey-hint", T.survey_scale.replace("{min}", frame.min)
      .replace("{min_label}", frame.min_label || "").replace("{max}", frame.max)
      .replace("{max_label}", frame.max_label || ""));
    // What the numbers mean is read with the group, not only seen above it.
    hint.id = "cc-survey-hint";
    fieldset.setAttribute("aria-describedby", hint.id);
    fieldset.appendChild(hint);
    var scores = el("div", "cc-survey-scores");
    for (var score = frame.min; score <= frame.max; score += 1) {
      var label = el("label", "cc-survey-score");
      var radio = el("input");
      radio.type = "radio";
      radio.name = "cc-survey-score";
      radio.value = String(score);
      label.appendChild(radio);
      label.appendChild(el("span", "", String(score)));
      scores.appendChild(label);
    }
    fieldset.appendChild(scores);
    surveyBox.appendChild(fieldset);
    var comment = el("textarea", "cc-survey-comment");
    comment.maxLength = 2000;
    comment.rows = 2;
    surveyBox.appendChild(field(frame.follow_up || T.survey_comment, comment));
    var note = el("p", "cc-survey-note");
    note.setAttribute("role", "status");
    surveyBox.appendChild(note);
    var submit = el("button", "cc-primary", T.survey_send);
    submit.type = "submit";
    surveyBox.appendChild(submit);
    show(surveyBox, true);
    setText(announcer, T.survey_title);
  }
  surveyBox.addEventListener("submit", function (event) {
    event.preventDefault();
    var chosen = surveyBox.querySelector("input[name='cc-survey-score']:checked");
    var note = surveyBox.querySelector(".cc-survey-note");
    if (!chosen) {
      note.textContent = T.survey_pick;
      surveyBox.querySelector("input[name='cc-survey-score']").focus();
      return;
    }
    var comment = surveyBox.querySelector(".cc-survey-comment");
    send({ type: "survey_answer", survey: surveyToken, score: parseInt(chosen.value, 10),
           comment: comment ? comment.value : "" });
  });
  function surveyAnswered(frame) {
    if (frame.survey !== surveyToken) { return; }
    var note = surveyBox.querySelector(".cc-survey-note");
    if (!frame.ok) { if (note) { note.textContent = frame.message || T.err_other; } return; }
    // The form that had the keyboard's focus goes away: the focus moves to the thanks that
    // replaces it, not to the page behind the widget.
    var hadFocus = surveyBox.contains(root.activeElement);
    while (surveyBox.firstChild) { surveyBox.removeChild(surveyBox.firstChild); }
    var thanks = el("p", "cc-survey-thanks", frame.message || "");
    thanks.setAttribute("role", "status");
    thanks.tabIndex = -1;
    surveyBox.appendChild(thanks);
    if (hadFocus) { thanks.focus(); }
    surveyToken = null;
  }

  [header, statusLine, queueLine, confirmBox, logBox, typingLine, errorLine, surveyBox, prechat, offline, composer].forEach(function (n) {
    panel.appendChild(n);
  });
  // The launcher first: Tab from it goes into the open panel, not into the host page.
  root.appendChild(launcher);
  root.appendChild(panel);
  root.appendChild(announcer);
  function mount() { document.body.appendChild(host); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }

  function show(node, visible) { node.classList.toggle("cc-hidden", !visible); }

  // --- state ---------------------------------------------------------------------------------
  var socket = null;
  var attempt = 0;
  var stopped = false;
  var stoppedText = "";   // said instead of "Connecting…" when the server told this tab to stop
  var ready = false;
  var online = null;      // null until the server said: nothing is announced before it is known
  var messages = {};      // server id -> rendered
  var agentMessageIds = [];
  // client id -> {text, failed, node}: not yet accepted. Kept in sessionStorage so a reload never
  // loses them; resent (idempotently, same id) after a reconnect unless refused, which waits for
  // the visitor's Retry or Discard.
  var pending = {};
  var conversations = [];
  var assigned = {};      // conversation id -> true once an agent took it: no queue line for it
  var prechatDone = storeGet(tokenKey + ":prechat") === "1" || !!userId;
  var typingTimer = null;
  var typingSentAt = 0;
  var queueTimer = null;  // polls the queue position while the conversation waits for an agent
  var QUEUE_POLL_MS = 20000;
  var endedKey = tokenKey + ":ended";
  // Conversations up to this id were ended by the visitor: a fresh chat does not show them again.
  var endedUpTo = parseInt(storeGet(endedKey) || "0", 10) || 0;
  var draftsKey = tokenKey + ":drafts";
  var openKey = tokenKey + ":open";
  var scrollKey = tokenKey + ":scroll";
  // The newest agent reply the visitor has seen (every tab of the browser): newer ones are unread.
  var seenKey = tokenKey + ":seen";
  var seenUpTo = storeGet(seenKey);
  var announcedUnread = -1;
  var restoreScroll = true;

  function loadDrafts() {
    var saved;
    try { saved = JSON.parse(sessionGet(draftsKey) || "[]"); } catch (e) { saved = []; }
    if (!Array.isArray(saved)) { return; }
    saved.forEach(function (d) {
      if (d && typeof d.id === "string" && typeof d.text === "string") {
        pending[d.id] = { text: d.text, failed: d.failed || null, node: null };
      }
    });
  }
  function saveDrafts() {
    sessionSet(draftsKey, JSON.stringify(Object.keys(pending).map(function (id) {
      return { id: id, text: pending[id].text, failed: pending[id].failed };
    })));
  }
  loadDrafts();

  function isOpen() { return !panel.classList.contains("cc-hidden"); }

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
  function scrollToEnd() { logBox.scrollTop = logBox.scrollHeight; }
  function addMessage(frame) {
    if (messages[frame.id]) { return; }
    if (frame.client_id && pending[frame.client_id]) {
      var stale = pending[frame.client_id].node;
      if (stale && stale.parentNode) { stale.parentNode.removeChild(stale); }
      window.clearTimeout(pending[frame.client_id].resendTimer);
      delete pending[frame.client_id];
      saveDrafts();
    }
    var node = renderMessage(frame);
    messages[frame.id] = node;
    var firstPending = list.querySelector(".cc-pending");
    list.insertBefore(node, firstPending);  // accepted messages before the ones still unsent
    if (frame.from === "agent") { agentMessageIds.push(frame.id); }
    if (frame.conversation && conversations.indexOf(frame.conversation) < 0) { conversations.push(frame.conversation); }
    scrollToEnd();
    if (frame.from === "agent") { show(typingLine, false); }
  }
  function addNotice(text) {
    list.insertBefore(el("li", "cc-notice", text), list.querySelector(".cc-pending"));
    scrollToEnd();
  }

  // --- unsent messages: said plainly next to them, with Retry ----------------------------------
  function renderDraft(id) {
    var draft = pending[id];
    var node = renderMessage({ from: "visitor", text: draft.text });
    node.classList.add("cc-pending");
    var state = el("div", "cc-send-state");
    if (draft.failed) {
      node.classList.add("cc-failed");
      var reason = T["err_" + draft.failed.reason] || T["err_" + draft.failed.code] || T.err_other;
      state.appendChild(el("span", "cc-failed-text", T.not_sent + " " + reason));
      var retry = el("button", "cc-link", T.retry);
      retry.type = "button";
      retry.addEventListener("click", function () { retryDraft(id); });
      var discard = el("button", "cc-link", T.discard);
      discard.type = "button";
      discard.addEventListener("click", function () { discardDraft(id); });
      state.appendChild(retry);
      state.appendChild(discard);
    } else {
      state.appendChild(el("span", "cc-sending", T.sending));
    }
    node.appendChild(state);
    if (draft.node && draft.node.parentNode) {
      draft.node.parentNode.replaceChild(node, draft.node);
    } else {
      list.appendChild(node);
    }
    draft.node = node;
    return node;
  }
  function renderPending() { Object.keys(pending).forEach(renderDraft); }
  // A message not acknowledged in time is sent again by its id (the server stores it once and
  // acknowledges the resend), after 3 s, 6 s, 12 s … at most 60 s apart, until acknowledged or
  // refused: an acknowledgement lost on the way is never a message shown as "Sending…" forever.
  var RESEND_FIRST_MS = 3000;
  var RESEND_MAX_MS = 60000;
  function sendDraft(id) {
    var draft = pending[id];
    if (!draft) { return; }
    send({ type: "message", id: id, text: draft.text });  // same id: a resend stores nothing twice
    window.clearTimeout(draft.resendTimer);
    draft.resendWait = Math.min(RESEND_MAX_MS, draft.resendWait ? draft.resendWait * 2 : RESEND_FIRST_MS);
    draft.resendTimer = window.setTimeout(function () {
      if (pending[id] === draft && !draft.failed && !stopped) { sendDraft(id); }
    }, draft.resendWait + Math.random() * 500);
  }
  function clearResends() {
    Object.keys(pending).forEach(function (id) { window.clearTimeout(pending[id].resendTimer); });
  }
  function retryDraft(id) {
    if (!pending[id]) { return; }
    pending[id].failed = null;
    pending[id].resendWait = 0;
    saveDrafts();
    renderDraft(id);
    sendDraft(id);
    textbox.focus();
  }
  function discardDraft(id) {
    var draft = pending[id];
    if (!draft) { return; }
    window.clearTimeout(draft.resendTimer);
    if (draft.node && draft.node.parentNode) { draft.node.parentNode.removeChild(draft.node); }
    delete pending[id];
    saveDrafts();
    textbox.focus();
    updateForms();
  }
  function refuseDraft(id, code, reason) {
    window.clearTimeout(pending[id].resendTimer);
    pending[id].resendWait = 0;
    pending[id].failed = { code: code, reason: reason };
    saveDrafts();
    var node = renderDraft(id);
    scrollToEnd();
    // Said once, assertively: the message did not go.
    errorLine.textContent = node.querySelector(".cc-failed-text").textContent;
    show(errorLine, true);
    window.setTimeout(function () { show(errorLine, false); }, 6000);
  }

  // --- queue position --------------------------------------------------------------------------
  function renderQueue(frame) {
    if (frame.conversation && assigned[frame.conversation]) { stopQueue(); return; }  // a late answer
    if (frame.follow_up) {  // after hours: no live line to stand in, say where the answer will come
      setText(queueLine, frame.follow_up === "email" ? T.follow_up_email : T.follow_up);
      show(queueLine, true);
      return;
    }
    if (frame.position === null || frame.position === undefined) { show(queueLine, false); return; }
    var text = T.queue.replace("{position}", String(frame.position));
    var seconds = frame.estimated_wait_seconds;
    if (typeof seconds === "number") {
      text += T.queue_wait.replace("{minutes}", String(Math.max(1, Math.round(seconds / 60))));
    }
    setText(queueLine, text);
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
  function showError(code, reason) {
    var text = T["err_" + reason] || T["err_" + code] || T.err_other;
    errorLine.textContent = text;
    show(errorLine, true);
    window.setTimeout(function () { show(errorLine, false); }, 6000);
  }
  // A live region speaks when its text changes: only a changed, settled state is written.
  function setText(node, text) { if (node.textContent !== text) { node.textContent = text; } }
  function updateForms() {
    var hasHistory = conversations.length > 0 || Object.keys(pending).length > 0;
    var offlineMode = online === false;
    var known = ready && online !== null;
    setText(statusLine, stoppedText ? stoppedText : !known ? (attempt ? T.reconnecting : T.connecting)
      : online ? T.online : T[offlineReason] || T.no_agent);
    show(offline, known && offlineMode);
    show(prechat, known && !offlineMode && !prechatDone && !hasHistory);
    show(composer, known && !offlineMode && (prechatDone || hasHistory));
    show(endButton, ready && conversations.length > 0);
    if (!conversations.length) { show(confirmBox, false); }
    // Opened before the forms were known: the first field takes the focus as soon as there is one.
    if (isOpen() && root.activeElement === panel) { focusFirstField(); }
  }
  var offlineReason = "no_agent";

  // --- unread replies --------------------------------------------------------------------------
  function unreadCount() {
    var seen = parseInt(seenUpTo || "0", 10) || 0;
    return agentMessageIds.filter(function (id) { return id > seen; }).length;
  }
  function markSeen() {
    if (!agentMessageIds.length) { return; }
    var newest = Math.max.apply(null, agentMessageIds);
    if (newest > (parseInt(seenUpTo || "0", 10) || 0)) { seenUpTo = String(newest); storeSet(seenKey, seenUpTo); }
  }
  function updateUnread(announceReply) {
    if (isOpen()) { markSeen(); }
    var count = unreadCount();
    unreadBadge.textContent = count ? String(count) : "";
    show(unreadBadge, count > 0);
    launcher.setAttribute("aria-label", count ? T.open + " (" + unreadText(count) + ")" : T.open);
    if (count && count !== announcedUnread) {
      announcer.textContent = announceReply ? T.new_reply.replace("{name}", announceReply) + " " + unreadText(count)
        : unreadText(count);
    }
    if (!count) { announcer.textContent = ""; }
    announcedUnread = count;
  }
  function unreadText(count) { return count === 1 ? T.unread_one : T.unread_many.replace("{count}", String(count)); }

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
      if (event.code === 4429) {
        // Too many tabs of this visitor and this is the oldest: no reconnect (it would only close
        // another tab in turn), and the visitor is told why.
        stopped = true;
        stoppedText = T.too_many_tabs;
        clearResends();
        updateForms();
        return;
      }
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
        agentMessageIds = [];
        conversations = (frame.conversations || []).filter(function (id) { return id > endedUpTo; });
        var shown = (frame.messages || []).filter(function (m) { return !(m.conversation <= endedUpTo); });
        shown.forEach(addMessage);
        Object.keys(pending).forEach(function (id) { pending[id].node = null; });
        renderPending();
        if (seenUpTo === null) { seenUpTo = "0"; markSeen(); storeSet(seenKey, seenUpTo); }  // first visit
        // The last word is the visitor's: they may be waiting in a queue; the answer tells.
        if (shown.length && shown[shown.length - 1].from === "visitor") { scheduleQueue(0); } else { stopQueue(); }
        Object.keys(pending).forEach(function (id) { if (!pending[id].failed) { sendDraft(id); } });
        var savedScroll = sessionGet(scrollKey);
        if (restoreScroll && savedScroll !== null && savedScroll !== "end") {
          logBox.scrollTop = parseInt(savedScroll, 10) || 0;  // where the visitor was before the reload
        } else {
          scrollToEnd();
        }
        restoreScroll = false;
        updateForms();
        updateUnread();
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
        updateUnread(frame.from === "agent" ? (frame.author || T.agent) : null);
        break;
      case "assigned":
        // An agent took the chat: the queue line goes at once, and the visitor hears who joined.
        if (typeof frame.conversation === "number") { assigned[frame.conversation] = true; }
        stopQueue();
        addNotice(T.joined.replace("{name}", frame.name || T.agent));
        break;
      case "queue":
        renderQueue(frame);
        if (frame.waiting === false || assigned[frame.conversation]) { stopQueue(); }
        else if (!queueTimer) { scheduleQueue(QUEUE_POLL_MS); }
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
        agentMessageIds = [];
        conversations = [];
        list.appendChild(el("li", "cc-notice", T.ended));
        Object.keys(pending).forEach(function (id) { pending[id].node = null; });
        renderPending();
        updateForms();
        updateUnread();
        break;
      case "typing":
        typingLine.textContent = T.typing.replace("{name}", frame.name || T.agent);
        show(typingLine, !!frame.on);
        break;
      case "offline_message":
        offline.reset();
        setText(statusLine, T.offline_done);
        break;
      case "survey":
        renderSurvey(frame);
        break;
      case "survey_answered":
        surveyAnswered(frame);
        break;
      case "error":
        if (frame.reason === "too_many_tabs") { break; }  // the close (4429) that follows says it
        if (typeof frame.id === "string" && pending[frame.id]) {
          // That message was not accepted: it says so next to it, with Retry, and is kept.
          refuseDraft(frame.id, frame.code, frame.reason);
          break;
        }
        showError(frame.code, frame.reason);
        break;
      default:
        break;
    }
  }

  // --- opening, closing, focus ---------------------------------------------------------------
  function visible(node) { return node.getClientRects().length > 0; }
  function focusables() {
    return Array.prototype.filter.call(
      panel.querySelectorAll("button, input, textarea, [tabindex='0']"),
      function (node) { return !node.disabled && visible(node); }
    );
  }
  function focusFirstField() {
    var field = [prechatName, offlineEmail, textbox].filter(visible)[0];
    (field || panel).focus();  // the panel itself until the forms are known (updateForms moves on)
  }
  function openPanel(takeFocus) {
    show(panel, true);
    launcher.setAttribute("aria-expanded", "true");
    sessionSet(openKey, "1");
    if (!socket && !stopped) { connect(false); }
    send({ type: "status" });
    updateUnread();
    if (takeFocus) { focusFirstField(); }
  }
  function closePanel() {
    show(panel, false);
    launcher.setAttribute("aria-expanded", "false");
    sessionSet(openKey, "0");
    launcher.focus();
  }
  launcher.addEventListener("click", function () {
    if (isOpen()) { closePanel(); } else { openPanel(true); }
  });
  closeButton.addEventListener("click", closePanel);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !event.isComposing) {
      event.preventDefault();
      event.stopPropagation();
      if (!confirmBox.classList.contains("cc-hidden")) { show(confirmBox, false); endButton.focus(); return; }
      closePanel();
      return;
    }
    if (event.key !== "Tab") { return; }
    // While open, Tab cycles inside the panel: it never falls into the host page behind it.
    var nodes = focusables();
    if (!nodes.length) { event.preventDefault(); return; }
    var first = nodes[0], last = nodes[nodes.length - 1], active = root.activeElement;
    if (event.shiftKey && (active === first || active === panel)) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && active === last) { event.preventDefault(); first.focus(); }
  });
  logBox.addEventListener("scroll", function () {
    var atEnd = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 4;
    sessionSet(scrollKey, atEnd ? "end" : String(Math.round(logBox.scrollTop)));
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden && isOpen()) { updateUnread(); } });

  prechat.addEventListener("submit", function (event) {
    event.preventDefault();
    send({ type: "prechat", name: prechatName.value, email: prechatEmail.value });
    prechatDone = true;
    storeSet(tokenKey + ":prechat", "1");
    updateForms();
    textbox.focus();
  });
  prechatSkip.addEventListener("click", function () {
    prechatDone = true;
    storeSet(tokenKey + ":prechat", "1");
    updateForms();
    textbox.focus();
  });
  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = textbox.value.trim();
    if (!text) { return; }
    var id = uuid();
    pending[id] = { text: text, failed: null, node: null };
    saveDrafts();
    renderDraft(id);
    scrollToEnd();
    textbox.value = "";
    send({ type: "typing", on: false });
    sendDraft(id);  // resent with the same id after a reconnect
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
    if (send({ type: "end" })) { show(confirmBox, false); textbox.focus(); } else { showError(0, "other"); }
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
  // otherwise on first open. After a reload the panel is as the visitor left it (open or closed,
  // scrolled where it was), without taking the focus from the page.
  if (sessionGet(openKey) === "1") { openPanel(false); } else if (storeGet(tokenKey)) { connect(false); }
  renderPending();
})();
