// The agent console: live updates over /ws/console/, navigation without reloads, keyboard
// shortcuts. The server renders every piece of customer content (escaped by Django's templates);
// this file only moves server-rendered fragments around and sets textContent, never builds HTML
// from data. Every form also works without it (plain POST + redirect).
(function () {
  "use strict";

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var workspace = null;
  var strings = {};
  var state = { agent: null, customer: null, conversation: null, seen: {}, socket: null, connected: false,
    everConnected: false, retry: 0, catchupBusy: false, catchupAgain: false, readAfterCatchup: false, announced: [], closedOffers: {}, refresh: {}, viewers: {}, canned: null };

  function t(key, fallback) { return strings[key] || fallback; }

  function csrfToken() {
    var input = $("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
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

  function fragmentFrom(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  // A signed-out session answers a fragment request with a redirect to the login page: go there
  // (and come back) instead of pasting the login form into a pane.
  function toLogin() {
    if (state.signedOut) return;
    state.signedOut = true;
    window.location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
  }

  function checked(r) {
    if (r.redirected && r.url.indexOf("/accounts/login/") >= 0) {
      toLogin();
      throw new Error("signed out");
    }
    if (!r.ok) throw new Error(String(r.status));
    return r;
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (r) {
      return checked(r).json();
    });
  }

  function getHTML(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
      return checked(r).text();
    });
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // --- the centre pane: the customer's timeline ----------------------------------------------------

  function pane() { return $("#conversation-pane"); }
  function list() { return $("#timeline-entries"); }
  function scroller() { return $("#timeline-scroll"); }

  // --- focus: never left on the page body ---------------------------------------------------------
  // Parts of the page are rendered afresh (the header after an action, the work list on every
  // event) and dialogs close: when that takes the focused element away, the focus goes to the
  // conversation's timeline (single-key shortcuts keep working there), else to the open
  // conversation in the work list, else to the main region.

  function focusLost() {
    var active = document.activeElement;
    return !active || active === document.body || !active.isConnected;
  }

  function focusHome() {
    var target = scroller() || $("#worklist .work-item.is-current .work-link") ||
      $("#my-conversations .work-link") || $("#main");
    if (target) target.focus({ preventScroll: true });
  }

  // The element of ``fresh`` that stands where ``el`` stood: the same id, else the same dialog
  // opener or action button or link (of the same offer or conversation in the work list).
  function counterpart(el, fresh) {
    if (el.id) return fresh.querySelector("#" + CSS.escape(el.id));
    var form = el.closest("form[data-action]");
    var inner = el.hasAttribute("data-open-dialog") ? '[data-open-dialog="' + el.getAttribute("data-open-dialog") + '"]'
      : form ? 'form[data-action="' + form.getAttribute("data-action") + '"] button'
      : el.classList.contains("work-link") ? ".work-link" : null;
    if (!inner) return null;
    var scope = fresh, item = el.closest("[data-offer], .work-item[data-conversation]");
    if (item) {
      var attr = item.hasAttribute("data-offer") ? "data-offer" : "data-conversation";
      scope = fresh.querySelector("[" + attr + '="' + item.getAttribute(attr) + '"]');
    }
    return scope ? scope.querySelector(inner) : null;
  }

  // Replace ``old`` with ``fresh``; if the focus was inside ``old`` it moves to its counterpart,
  // else (the button is gone: Resolve after resolving, an offer accepted) to focusHome().
  function replaceKeepingFocus(old, fresh) {
    var active = document.activeElement;
    var had = active && active !== document.body && old.contains(active);
    var match = had ? counterpart(active, fresh) : null;
    old.replaceWith(fresh);
    if (!had) return;
    if (match) match.focus({ preventScroll: true }); else focusHome();
  }

  function sortKey(el) {
    return (el.getAttribute("data-sort") || "0|0|0|0").split("|").map(Number);
  }

  function before(a, b) {
    for (var i = 0; i < 4; i++) { if (a[i] !== b[i]) return a[i] < b[i]; }
    return false;
  }

  function nearBottom() {
    var s = scroller();
    return !s || s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  function scrollToBottom() {
    var s = scroller();
    if (s) s.scrollTop = s.scrollHeight;
  }

  // Put a server-rendered entry in its place: replace the one with the same key (a delivery
  // update), else insert it in timeline order. Keys make a repeat harmless: never shown twice.
  function placeEntry(html) {
    var ol = list();
    if (!ol) return;
    var node = fragmentFrom(html).firstElementChild;
    if (!node) return;
    var key = node.getAttribute("data-key");
    var existing = key ? ol.querySelector('[data-key="' + key + '"]') : null;
    if (existing) { existing.replaceWith(node); return; }
    var empty = ol.querySelector(".empty-timeline");
    if (empty) empty.remove();
    var mine = sortKey(node);
    var child = ol.lastElementChild;
    while (child && before(mine, sortKey(child))) child = child.previousElementSibling;
    ol.insertBefore(node, child ? child.nextElementSibling : ol.firstElementChild);
    node.classList.add("is-new");
  }

  // Catch up from the database: everything after the sequence numbers this page has seen, per
  // conversation. Used for every live message (the event only says "something new"), after a
  // reconnect and after our own send, so all three paths insert the same way.
  function catchup() {
    if (!state.customer) return;
    if (state.catchupBusy) { state.catchupAgain = true; return; }
    state.catchupBusy = true;
    var refresh = Object.keys(state.refresh);
    state.refresh = {};
    var url = pane().getAttribute("data-catchup-url") + "?seen=" + encodeURIComponent(JSON.stringify(state.seen)) +
      "&current=" + (state.conversation || "") + (refresh.length ? "&refresh=" + refresh.join(",") : "");
    var stick = nearBottom();
    var customer = state.customer;
    getJSON(url).then(function (data) {
      if (customer !== state.customer) return;
      if (!data.complete) { loadPanes(location.pathname, false); return; }
      data.entries.forEach(function (entry) { placeEntry(entry.html); });
      Object.keys(data.seen).forEach(function (k) {
        state.seen[k] = Math.max(state.seen[k] || 0, data.seen[k]);
      });
      if (stick) scrollToBottom();
      if (state.readAfterCatchup) { state.readAfterCatchup = false; markRead(); }
    }).catch(function () {
      if (state.readAfterCatchup) { state.readAfterCatchup = false; refreshSidebar(); }
      toast(t("catchup_failed", "Could not load the newest messages; retrying."), "warn");
      setTimeout(catchup, 3000);
    }).finally(function () {
      state.catchupBusy = false;
      if (state.catchupAgain) { state.catchupAgain = false; catchup(); }
    });
  }
  var catchupSoon = debounce(catchup, 40);

  // Routing decisions (offered, assigned, transferred, resolved, requeued …) are timeline entries
  // too, written in the transaction the event follows. An event about a conversation this timeline
  // shows catches it up from the database the same way a message does (the event has no sequence
  // number to compare; the catch-up asks by the ones seen, so nothing shows twice).
  function onConversationEvent(event) {
    if (!state.customer || event.conversation == null) return;
    var id = String(event.conversation);
    var shown = id === String(state.conversation) || Object.prototype.hasOwnProperty.call(state.seen, id) ||
      (event.customer != null && String(event.customer) === String(state.customer));
    if (shown) catchupSoon();
  }

  // The agent is reading a conversation when it is the one open in a page they can see.
  function readingNow(conversationId) {
    return state.conversation !== null && conversationId != null &&
      String(conversationId) === String(state.conversation) && document.visibilityState === "visible";
  }

  // Record that the open conversation is read as far as this page shows it, then refresh the work
  // list. Only a conversation of the agent's own list has an unread count to clear.
  function markRead() {
    var id = state.conversation, seq = id ? state.seen[id] : 0;
    if (!id || !seq || !$('#my-conversations .work-item[data-conversation="' + id + '"]')) { refreshSidebar(); return; }
    var body = new FormData();
    body.append("seq", String(seq));
    fetch("/console/conversations/" + id + "/read/", {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
    }).catch(function () {}).finally(refreshSidebar);
  }

  function isMe(agentId) {
    return state.agent !== null && agentId != null && String(agentId) === state.agent;
  }

  function onMessageEvent(event) {
    if (String(event.customer) !== String(state.customer)) return;
    if (event.type === "message.delivery") {
      state.refresh[event.message] = true;
      catchupSoon();
      return;
    }
    var seen = state.seen[event.conversation] || 0;
    if (event.seq && event.seq <= seen) return; // already on screen
    catchupSoon();
  }

  // Scrolling up loads older history in place, keeping what the agent reads where it is.
  function watchOlder() {
    var link = $("#timeline-scroll a[data-older]");
    if (!link || !("IntersectionObserver" in window)) return;
    var observer = new IntersectionObserver(function (items) {
      if (!items.some(function (i) { return i.isIntersecting; })) return;
      observer.disconnect();
      loadOlder(link);
    }, { root: scroller(), rootMargin: "200px 0px 0px 0px" });
    observer.observe(link);
    link.addEventListener("click", function (event) {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      observer.disconnect();
      loadOlder(link);
    });
  }

  function loadOlder(link) {
    if (link.getAttribute("aria-busy")) return;
    link.setAttribute("aria-busy", "true");
    var cursor = new URL(link.href, location.href).searchParams.get("before");
    var url = pane().getAttribute("data-older-url") + "?before=" + encodeURIComponent(cursor) + "&current=" + (state.conversation || "");
    getHTML(url).then(function (html) {
      var fragment = fragmentFrom(html);
      var incoming = fragment.querySelector("ol");
      var s = scroller();
      var from = s.scrollHeight;
      var ol = list();
      Array.prototype.slice.call(incoming.children).reverse().forEach(function (child) {
        var key = child.getAttribute("data-key");
        if (key && ol.querySelector('[data-key="' + key + '"]')) return;
        ol.insertBefore(child, ol.firstElementChild);
      });
      s.scrollTop += s.scrollHeight - from;
      var next = fragment.querySelector("a[data-older]");
      if (next) {
        link.href = next.getAttribute("href");
        link.removeAttribute("aria-busy");
        watchOlder();
      } else {
        link.parentNode.remove();
      }
    }).catch(function () { window.location.href = link.href; });
  }

  // --- panes: navigation without reloads --------------------------------------------------------------

  function initPanes() {
    var p = pane();
    state.customer = p ? p.getAttribute("data-customer") : null;
    state.conversation = p ? (p.getAttribute("data-conversation") || null) : null;
    var seen = $("#seen-map");
    state.seen = seen ? JSON.parse(seen.textContent || "{}") : {};
    state.viewers = {};
    state.canned = null;
    renderCollision();
    watchOlder();
    initComposer();
    scrollToBottom();
    highlightCurrent();
    markOfferTarget();
    watchCurrent();
    var title = p && p.getAttribute("data-title");
    document.title = (title ? title + " · " : "") + (strings.app_title || "Contact Center");
  }

  function loadPanes(url, push) {
    var target = new URL(url, location.href);
    target.searchParams.set("fragment", "panes");
    return getHTML(target.toString()).then(function (html) {
      $("#panes").innerHTML = html;
      if (push) history.pushState({ panes: true }, "", url);
      initPanes();
      // Focus the conversation, not the composer: single-key shortcuts (e, a, j/k) keep working
      // right after opening one, and r / n start typing.
      var focus = $("#timeline-scroll");
      if (focus && push) focus.focus({ preventScroll: true });
      else if (focusLost()) focusHome(); // what had the focus was in the panes just replaced
    }).catch(function () { window.location.href = url; });
  }

  // Header and customer pane only: the timeline and what the agent is typing stay as they are.
  var refreshHead = debounce(function () {
    if (!state.customer) return;
    var target = new URL(location.href);
    target.searchParams.set("fragment", "panes");
    getHTML(target.toString()).then(function (html) {
      var fresh = fragmentFrom(html);
      var head = $(".conversation-head"), newHead = fresh.querySelector(".conversation-head");
      if (head && newHead) replaceKeepingFocus(head, newHead);
      ["#resolve-dialog", "#snooze-dialog", "#transfer-dialog", "#assign-dialog"].forEach(function (sel) {
        var old = $(sel), incoming = fresh.querySelector(sel);
        if (old && incoming && !old.open) old.replaceWith(incoming);
      });
      var right = $("#customer-pane"), newRight = fresh.querySelector("#customer-pane");
      if (right && newRight) {
        var active = document.activeElement, had = right.contains(active);
        var match = had ? counterpart(active, newRight) : null;
        right.replaceChildren.apply(right, Array.prototype.slice.call(newRight.childNodes));
        if (had) { if (match) match.focus({ preventScroll: true }); else focusHome(); }
      }
      // The composer keeps what the agent is typing: only whether the conversation is resolved
      // (and so whether sending reopens it) comes from the fresh rendering.
      var form = composer(), newForm = fresh.querySelector("#composer");
      if (form && newForm) {
        form.setAttribute("data-resolved", newForm.getAttribute("data-resolved") || "");
        updateSendable();
      }
    }).catch(function () {});
  }, 250);

  var refreshSidebar = debounce(function () {
    var url = workspace.getAttribute("data-sidebar-url") + "?current=" + (state.conversation || "");
    getHTML(url).then(function (html) {
      var inner = $("#worklist-inner"), fresh = fragmentFrom(html).firstElementChild;
      if (inner && fresh) replaceKeepingFocus(inner, fresh);
      highlightCurrent();
      tickCountdowns();
      markOfferTarget();
      showOfferToast(false);
    }).catch(function () {});
  }, 150);

  // A live event can be lost with no socket dropping (published while Redis restarted, or by a
  // worker killed between its commit and the publish). On a timer the console asks what the
  // database holds of its work (/console/sync/): a work list that differs is fetched again, a
  // timeline behind the newest sequence number catches up. Reconnects already do both.
  function syncWork() {
    var url = workspace.getAttribute("data-sync-url");
    if (!url || !state.connected) return;
    getJSON(url).then(function (data) {
      var inner = $("#worklist-inner");
      if (inner && inner.getAttribute("data-sync") !== data.signature) refreshSidebar();
      var behind = data.conversations.some(function (c) {
        var id = String(c.id);
        return Object.prototype.hasOwnProperty.call(state.seen, id) && c.last_seq > state.seen[id];
      });
      if (behind) catchup();
    }).catch(function () {});
  }

  function highlightCurrent() {
    $$("#worklist .work-item").forEach(function (item) {
      var on = state.conversation && item.getAttribute("data-conversation") === String(state.conversation);
      item.classList.toggle("is-current", !!on);
    });
  }

  // --- offers: one toast that counts them, and the one `a` accepts -------------------------------------
  // Going Available with several conversations waiting brings several offers at once: one toast
  // says how many wait (never a stack of identical ones over the customer pane), and `a` accepts
  // the offer the agent is looking at, not silently the oldest.

  function listedOffers() {
    return $$("#offers [data-offer]").map(function (li) { return li.getAttribute("data-offer"); })
      .filter(function (id) { return !state.closedOffers[id]; });
  }

  function pendingOffers() {
    var ids = listedOffers();
    state.announced.forEach(function (id) { if (ids.indexOf(id) < 0 && !state.closedOffers[id]) ids.push(id); });
    return ids;
  }

  function announceOffer(offerId) {
    var id = String(offerId);
    state.announced = state.announced.filter(function (other) { return other !== id; });
    state.announced.push(id);
    markOfferTarget();
    showOfferToast(true);
  }

  function closeOffer(offerId) {
    var id = String(offerId);
    state.closedOffers[id] = true;
    state.announced = state.announced.filter(function (other) { return other !== id; });
    markOfferTarget();
    showOfferToast(false);
  }

  // ``fresh``: an offer was just announced (show the toast again); otherwise only keep the count
  // of a toast still on screen right (an offer taken, rejected or timed out meanwhile).
  function showOfferToast(fresh) {
    var region = $("#toasts");
    if (!region) return;
    var item = $('[data-toast="offers"]', region);
    if (!item && !fresh) return;
    var count = pendingOffers().length;
    if (!count) { if (item) item.remove(); return; }
    if (!item) {
      item = document.createElement("div");
      item.className = "toast toast-info";
      item.setAttribute("data-toast", "offers");
      region.appendChild(item);
    }
    item.textContent = count === 1 ? t("new_offer", "New conversation offered to you.")
      : t("offers_waiting", "{count} offers waiting. A accepts the newest.").replace("{count}", String(count));
    if (fresh) {
      clearTimeout(item._timer);
      item._timer = setTimeout(function () { item.remove(); }, 8000);
    }
  }

  function offerForm(offerId) {
    return $('#offers [data-offer="' + offerId + '"] form[data-action=accept]');
  }

  // The offer `a` accepts: the one whose item has the focus, else the one of the conversation
  // open in the pane, else the newest announced, else the newest listed.
  function offerToAccept() {
    var focused = document.activeElement && document.activeElement.closest &&
      document.activeElement.closest("#offers [data-offer]");
    if (focused) return focused.querySelector("form[data-action=accept]");
    var open = $(".conversation-actions form[data-action=accept]");
    if (open) return open;
    var listed = listedOffers();
    for (var i = state.announced.length - 1; i >= 0; i--) {
      if (listed.indexOf(state.announced[i]) >= 0) return offerForm(state.announced[i]);
    }
    return listed.length ? offerForm(listed[listed.length - 1]) : null;
  }

  // Show in the list which offer `a` would accept when the pane offers none of its own.
  function markOfferTarget() {
    var target = $(".conversation-actions form[data-action=accept]") ? null : offerToAccept();
    var item = target && target.closest("#offers [data-offer]");
    $$("#offers [data-offer]").forEach(function (li) { li.classList.toggle("is-shortcut-target", li === item); });
  }

  // --- the websocket --------------------------------------------------------------------------------------

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/console/");
    state.socket = socket;
    socket.addEventListener("open", function () {
      var reconnect = state.everConnected;
      state.connected = true;
      state.everConnected = true;
      state.retry = 0;
      $("#connection").hidden = true;
      document.body.classList.remove("is-offline");
      watchCurrent();
      if (reconnect) { catchup(); refreshSidebar(); refreshHead(); }
    });
    socket.addEventListener("message", function (msg) {
      var event;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      onEvent(event);
    });
    socket.addEventListener("close", function (closed) {
      state.connected = false;
      if (state.socket !== socket) return;
      if (closed.code === 4401) {
        // This browser signed out (in another tab): as a page request would, go to the login page
        // instead of "Reconnecting…" to a session that is gone.
        toLogin();
        return;
      }
      if (closed.code === 4429) {
        // Too many consoles of this session are open and this one is the oldest: said plainly,
        // and no reconnect (it would only close another tab in turn).
        var banner = $("#connection");
        banner.textContent = t("too_many_consoles", "This console was closed because too many console tabs are open.");
        banner.hidden = false;
        document.body.classList.add("is-offline");
        return;
      }
      if (state.signedOut) return;
      // A socket refused because the session expired looks like a network failure (1006): after
      // a couple of failures a page request tells the two apart (checked() goes to the login page).
      if (state.retry >= 2) refreshSidebar();
      $("#connection").hidden = false;
      document.body.classList.add("is-offline");
      var delay = Math.min(10000, 500 * Math.pow(2, state.retry++)) + Math.random() * 300;
      setTimeout(connect, delay);
    });
  }

  function send(frame) {
    if (state.socket && state.connected) state.socket.send(JSON.stringify(frame));
  }

  function watchCurrent() {
    if (state.conversation) send({ type: "watch", conversation: Number(state.conversation) });
    else send({ type: "unwatch" });
  }

  function onEvent(event) {
    var type = event.type || "";
    // The softphone (softphone.js) follows the same socket: calls, voice offers.
    document.dispatchEvent(new CustomEvent("cc:console-event", { detail: event }));
    if (type === "message.created" || type === "message.delivery") {
      onMessageEvent(event);
      if (type === "message.created") {
        // In the conversation the agent is reading, a new message is read once it is on screen:
        // the work list is refreshed after that is recorded, so it never shows it as unread.
        if (readingNow(event.conversation)) { state.readAfterCatchup = true; catchupSoon(); } else refreshSidebar();
      }
    } else if (type.indexOf("offer.") === 0) {
      refreshSidebar();
      // Offers also reach the supervisors and whoever watches the conversation: only the agent
      // it is for is told it is theirs.
      if (type === "offer.created" && isMe(event.agent)) announceOffer(event.offer);
      else if (type !== "offer.created" && event.offer != null) closeOffer(event.offer);
      if (String(event.conversation) === String(state.conversation)) refreshHead();
      onConversationEvent(event);
    } else if (type.indexOf("conversation.") === 0 || type.indexOf("presence") === 0 || type.indexOf("agent.") === 0) {
      refreshSidebar();
      // A timed-out offer changes the agent's status only when nobody answered it (offers_expire);
      // one accepted too late times out with the status kept (offer_accept): say so only when the
      // status really changed, and only to that agent.
      if (type === "agent.presence" && event.reason === "missed_offer" && isMe(event.agent)) {
        toast(t("offer_missed", "An offer timed out: your status was changed."), "warn");
      }
      // Set offline while no console of theirs was open (services.presence): the server sends
      // the event again, with the reason in their language, to the first console they open.
      if (type === "agent.presence" && event.reason === "disconnected" && isMe(event.agent) && event.message) {
        toast(event.message, "warn");
      }
      if (String(event.conversation) === String(state.conversation)) refreshHead();
      onConversationEvent(event);
    } else if (type === "watch.ended") {
      // The server stopped relaying this conversation: it is no longer open to this agent (an
      // offer rejected or timed out, a colleague took it). The page leaves it too.
      if (String(event.conversation) !== String(state.conversation)) return;
      toast(event.message || "This conversation is no longer open to you.", "warn");
      loadPanes("/console/", true);
      refreshSidebar();
    } else if (type === "typing") {
      if (String(event.conversation) !== String(state.conversation)) return;
      if (event.customer) showTyping(t("customer_typing", "The customer is typing…"), event.on);
    } else if (type === "viewer") {
      if (String(event.conversation) !== String(state.conversation)) return;
      if (event.state === "left") delete state.viewers[event.agent || event.name];
      else state.viewers[event.agent || event.name] = event;
      renderCollision();
    }
  }

  var typingTimer = null;
  function showTyping(text, on) {
    var line = $("#typing-line");
    if (!line) return;
    line.textContent = on ? text : "";
    clearTimeout(typingTimer);
    if (on) typingTimer = setTimeout(function () { line.textContent = ""; }, 8000);
  }

  function renderCollision() {
    var box = $("#collision");
    if (!box) return;
    var names = Object.keys(state.viewers).map(function (k) { return state.viewers[k]; });
    if (!names.length) { box.hidden = true; box.textContent = ""; return; }
    var typing = names.filter(function (v) { return v.state === "typing"; });
    box.hidden = false;
    box.classList.toggle("is-typing", typing.length > 0);
    box.textContent = typing.length
      ? t("also_typing", "Also replying here:") + " " + typing.map(function (v) { return v.name; }).join(", ")
      : t("also_viewing", "Also viewing:") + " " + names.map(function (v) { return v.name; }).join(", ");
  }

  // --- forms ------------------------------------------------------------------------------------------------

  function setError(form, text) {
    var box = form.querySelector("[data-error]");
    if (box) box.textContent = text || "";
    if (text) toast(text, "error");
  }

  function submitAction(form, submitter) {
    var action = form.getAttribute("data-action");
    var confirmText = form.getAttribute("data-confirm");
    if (confirmText && !window.confirm(confirmText)) return;
    var body = new FormData(form);
    if (submitter && submitter.name) body.append(submitter.name, submitter.value);
    if (action === "reply" || action === "note") {
      var text = (body.get("text") || "").trim();
      if (!text && !body.get("template")) { setError(form, t("empty", "Type something first.")); return; }
    }
    var buttons = $$("button[type=submit]", form);
    buttons.forEach(function (b) { b.disabled = true; });
    setError(form, "");
    fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
    }).then(function (r) {
      return r.json().catch(function () { return { error: t("failed", "Something went wrong.") + " (" + r.status + ")" }; });
    }).then(function (data) {
      if (data.error) {
        setError(form, data.error);
        if (data.login) window.open(data.login + "?next=/console/", "_blank"); // sign in beside, keep the text
        return;
      }
      afterAction(form, action, data);
    }).catch(function () {
      setError(form, t("offline", "Not sent: the connection dropped. Your text is still here."));
    }).finally(function () {
      buttons.forEach(function (b) { b.disabled = false; });
      updateSendable();
    });
  }

  function afterAction(form, action, data) {
    var dialog = form.closest("dialog");
    if (dialog) {
      dialog.close();
      // The dialog gives the focus back to what opened it: the header's Resolve or Snooze button,
      // which the fresh header replaces. The conversation's timeline is where the agent goes on.
      if (action === "resolve" || action === "snooze" || action === "assign") focusHome();
    }
    if (action === "reply" || action === "note") {
      var area = $("#composer-text");
      area.value = "";
      sendTyping(false);
      catchup();
      refreshSidebar();
      refreshHead(); // "waiting for us" is answered now
      if (data.conversation && String(data.conversation) !== String(state.conversation)) {
        toast(t("sent_elsewhere", "Sent on the other channel."), "ok");
      }
      return;
    }
    if (action === "accept" && data.conversation) { loadPanes("/console/conversations/" + data.conversation + "/", true); refreshSidebar(); return; }
    if (action === "pick" && data.conversation) { loadPanes("/console/conversations/" + data.conversation + "/", true); refreshSidebar(); return; }
    if (action === "transfer") { toast(t("transferred", "Transferred."), "ok"); loadPanes("/console/", true); refreshSidebar(); return; }
    if (action === "presence") { refreshSidebar(); return; }
    if (action === "assign") toast(t("assigned", "Assigned."), "ok");
    if (action === "merge" || action === "unmerge") { loadPanes(location.pathname, false); return; }
    refreshHead();
    refreshSidebar();
    catchup();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    // Signing out here: the server closes this page's socket too, and the form's own redirect is
    // where to go (not the login page with this page as "next").
    if (form.action && /\/accounts\/logout\/$/.test(form.action)) state.signedOut = true;
    if (!form.hasAttribute || !form.hasAttribute("data-action") || !workspace) return;
    event.preventDefault();
    submitAction(form, event.submitter);
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.id === "presence-select") submitAction(el.form);
    else if (el.hasAttribute && el.hasAttribute("data-autosubmit")) submitAction(el.form);
    else if (el.id === "reply-channel") updateSendable();
    else if (el.id === "reply-template") updateSendable();
  });

  // --- composer ---------------------------------------------------------------------------------------------

  function composer() { return $("#composer"); }

  function setMode(mode) {
    var form = composer();
    if (!form) return;
    form.setAttribute("data-action", mode === "note" ? "note" : "reply");
    form.action = form.getAttribute(mode === "note" ? "data-note-url" : "data-reply-url");
    form.classList.toggle("is-note", mode === "note");
    $$(".composer-tab", form).forEach(function (tab) {
      var on = tab.getAttribute("data-mode") === mode;
      tab.classList.toggle("is-current", on);
      tab.setAttribute("aria-selected", on ? "true" : "false");
    });
    $$("[data-reply-only]", form).forEach(function (el) { el.hidden = mode === "note"; });
    updateSendable();
    $("#composer-text").focus();
  }

  // A resolved conversation keeps its composer: a reply reopens it (the server does), a note
  // does not. The composer says so, and the send button says what it will do.
  function showResolved(form) {
    var resolved = form.getAttribute("data-resolved") === "1";
    var reopens = resolved && form.getAttribute("data-action") !== "note";
    form.classList.toggle("is-resolved", resolved);
    var notice = $("#composer-resolved", form);
    if (notice) notice.hidden = !resolved;
    var sendLabel = $("[data-send-label]", form), reopenLabel = $("[data-reopen-label]", form);
    if (sendLabel && reopenLabel) { sendLabel.hidden = reopens; reopenLabel.hidden = !reopens; }
  }

  // The channel picker says why a channel is refused and offers WhatsApp templates outside the
  // 24-hour window; the send button is disabled until the reply can go out.
  function updateSendable() {
    var form = composer();
    if (!form) return;
    showResolved(form);
    var select = $("#reply-channel"), reason = $("#channel-reason"), templates = $("#reply-template");
    var send = $("#composer-send");
    if (form.getAttribute("data-action") === "note" || !select) { send.disabled = false; return; }
    var option = select.options[select.selectedIndex];
    var available = !option || option.getAttribute("data-available") !== "0";
    reason.textContent = available ? "" : (option.getAttribute("data-reason") || "");
    var raw = option ? option.getAttribute("data-templates") || "" : "";
    var wanted = !available && raw;
    templates.hidden = !wanted;
    if (wanted && templates.getAttribute("data-for") !== option.value) {
      templates.setAttribute("data-for", option.value);
      while (templates.options.length > 1) templates.remove(1);
      raw.split(";").forEach(function (pair) {
        var parts = pair.split("|");
        if (!parts[0]) return;
        var opt = document.createElement("option");
        opt.value = parts[0];
        opt.textContent = parts[1] || parts[0];
        templates.appendChild(opt);
      });
    }
    if (!wanted) templates.value = "";
    send.disabled = !available && !(wanted && templates.value);
  }

  var typingOn = false, typingIdle = null, typingSentAt = 0;
  function sendTyping(on) {
    if (!state.conversation) return;
    var now = Date.now();
    if (on && typingOn && now - typingSentAt < 3000) return;
    if (!on && !typingOn) return;
    typingOn = on;
    typingSentAt = now;
    send({ type: "typing", conversation: Number(state.conversation), on: on });
  }

  function initComposer() {
    var form = composer();
    if (!form) return;
    var area = $("#composer-text");
    $$(".composer-tab", form).forEach(function (tab) {
      tab.addEventListener("click", function () { setMode(tab.getAttribute("data-mode")); });
    });
    area.addEventListener("input", function () {
      if (form.getAttribute("data-action") === "reply") {
        sendTyping(true);
        clearTimeout(typingIdle);
        typingIdle = setTimeout(function () { sendTyping(false); }, 4000);
      }
      cannedMenu();
    });
    area.addEventListener("keydown", function (event) {
      var menu = $("#canned-menu");
      if (!menu.hidden && ["ArrowDown", "ArrowUp", "Enter", "Tab", "Escape"].indexOf(event.key) >= 0) {
        cannedKey(event);
        return;
      }
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (!$("#composer-send").disabled) submitAction(form);
      } else if (event.key === "Escape") {
        focusHome(); // leave the composer for the timeline (shortcuts work there), not the page body
      }
    });
    area.addEventListener("blur", function () { setTimeout(function () { $("#canned-menu").hidden = true; }, 150); });
    updateSendable();
  }

  // Canned responses: "/" then a shortcode; arrows choose, Enter or Tab inserts.
  function cannedMenu() {
    var area = $("#composer-text"), menu = $("#canned-menu");
    var upto = area.value.slice(0, area.selectionStart);
    var match = upto.match(/(?:^|\s)\/([\w-]*)$/);
    if (!match) { menu.hidden = true; return; }
    var load = state.canned ? Promise.resolve(state.canned) :
      getJSON(workspace.getAttribute("data-canned-url") + "?conversation=" + (state.conversation || "")).then(function (d) {
        state.canned = d.responses; return d.responses;
      });
    load.then(function (responses) {
      var hits = responses.filter(function (r) { return r.shortcode.indexOf(match[1].toLowerCase()) === 0; }).slice(0, 8);
      menu.textContent = "";
      hits.forEach(function (r, i) {
        var li = document.createElement("li");
        li.setAttribute("role", "option");
        li.setAttribute("data-index", String(i));
        li.className = i === 0 ? "is-active" : "";
        var code = document.createElement("strong");
        code.textContent = "/" + r.shortcode;
        var title = document.createElement("span");
        title.textContent = " " + r.title;
        var preview = document.createElement("div");
        preview.className = "muted small";
        preview.textContent = r.text.slice(0, 90);
        li.appendChild(code); li.appendChild(title); li.appendChild(preview);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); insertCanned(r, match[1]); });
        menu.appendChild(li);
      });
      menu.hidden = hits.length === 0;
      menu._hits = hits;
      menu._typed = match[1];
    }).catch(function () {});
  }

  function cannedKey(event) {
    var menu = $("#canned-menu");
    var items = $$("li", menu);
    var index = items.findIndex(function (li) { return li.classList.contains("is-active"); });
    if (event.key === "Escape") { menu.hidden = true; event.preventDefault(); return; }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (index >= 0) items[index].classList.remove("is-active");
      index = (index + (event.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items[index].classList.add("is-active");
      return;
    }
    event.preventDefault();
    insertCanned(menu._hits[Math.max(0, index)], menu._typed);
  }

  function insertCanned(response, typed) {
    var area = $("#composer-text");
    var start = area.selectionStart - typed.length - 1;
    area.value = area.value.slice(0, start) + response.text + area.value.slice(area.selectionStart);
    var caret = start + response.text.length;
    area.setSelectionRange(caret, caret);
    $("#canned-menu").hidden = true;
    area.focus();
  }

  // --- keyboard ---------------------------------------------------------------------------------------------

  function typingInField(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function moveConversation(step) {
    var links = $$("#my-conversations a[data-conversation-link]");
    if (!links.length) return;
    var index = links.findIndex(function (a) { return a.closest(".work-item").classList.contains("is-current"); });
    var next = links[Math.min(links.length - 1, Math.max(0, index + step))] || links[0];
    if (index < 0) next = links[0];
    loadPanes(next.getAttribute("href"), true);
  }

  document.addEventListener("keydown", function (event) {
    if (!workspace || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typingInField(event.target) || $("dialog[open]")) return;
    var key = event.key;
    if (key === "j") moveConversation(1);
    else if (key === "k") moveConversation(-1);
    else if (key === "r" && composer()) setMode("reply");
    else if (key === "n" && composer()) setMode("note");
    else if (key === "e") { var resolve = $("#resolve-dialog"); if (resolve) resolve.showModal(); else return; }
    else if (key === "a") {
      var accept = offerToAccept();
      if (accept) submitAction(accept); else return;
    } else if (key === "?") $("#shortcuts-dialog").showModal();
    else return;
    event.preventDefault();
  });

  // --- clicks: navigation, dialogs, email HTML ------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog) { dialog.showModal(); event.preventDefault(); }
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) { closer.closest("dialog").close(); return; }
    var copy = event.target.closest("[data-copy]");
    if (copy) { copyText(copy.getAttribute("data-copy")); return; }
    var link = event.target.closest("a[data-nav]");
    if (link && workspace && !(event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0)) {
      event.preventDefault();
      loadPanes(link.getAttribute("href"), true);
    }
  });

  // A dialog closed gives the focus back to what opened it; opened by a shortcut from nowhere (or
  // its opener replaced meanwhile), that is nothing: the timeline then.
  document.addEventListener("close", function (event) {
    if (workspace && event.target.tagName === "DIALOG" && focusLost()) focusHome();
  }, true);

  // Copy a value too long to show whole (a web-visitor id). The clipboard API needs a secure
  // context (https or localhost); elsewhere the older copy command does it.
  function copyText(text) {
    var done = function () { toast(t("copied", "Copied."), "ok"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { toast(t("failed", "Something went wrong."), "error"); });
      return;
    }
    var active = document.activeElement, area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    if (active) active.focus({ preventScroll: true });
    if (ok) done(); else toast(t("failed", "Something went wrong."), "error");
  }

  // Formatted email: only on request, in a frame with no script and no same-origin rights, served
  // with its own CSP that blocks every network fetch.
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.matches || !details.matches("details[data-html-src]") || !details.open) return;
    if (details.querySelector("iframe")) return;
    var frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox");
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.setAttribute("title", t("formatted_email", "Formatted email"));
    frame.className = "email-frame";
    frame.src = details.getAttribute("data-html-src");
    details.appendChild(frame);
  }, true);

  // Back to a tab left with a conversation open: what arrived meanwhile is read now.
  document.addEventListener("visibilitychange", function () {
    if (!workspace || document.visibilityState !== "visible" || !state.conversation) return;
    if ($('#my-conversations .work-item.has-unread[data-conversation="' + state.conversation + '"]')) markRead();
  });

  window.addEventListener("popstate", function () {
    if (workspace) loadPanes(location.href, false);
  });

  // --- clocks ---------------------------------------------------------------------------------------------------

  function tickCountdowns() {
    var now = Date.now();
    $$(".countdown[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.round((Date.parse(el.getAttribute("data-expires")) - now) / 1000));
      el.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      el.classList.toggle("is-urgent", left <= 15);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    workspace = $("#workspace");
    var stringsNode = $("#console-strings");
    if (stringsNode) strings = JSON.parse(stringsNode.textContent || "{}");
    if (!workspace) return; // the customer list and other plain pages need nothing from here
    state.agent = workspace.getAttribute("data-agent") || null; // "": signed in without an agent profile
    initPanes();
    connect();
    setInterval(tickCountdowns, 1000);
    tickCountdowns();
    setInterval(function () { send({ type: "ping" }); }, 25000);
    var syncSeconds = Number(workspace.getAttribute("data-sync-seconds") || 0);
    if (syncSeconds > 0) setInterval(syncWork, syncSeconds * 1000);
  });

  // For tests and the curious: the live state of the page.
  window.ccConsole = { state: state, catchup: catchup, syncWork: syncWork };
})();
