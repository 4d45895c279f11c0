// A community topic's page (/streams/{slug}/community/{topic}): pages the history from the JSON
// API (newest first, "Load older" for more), posts with the page's CSRF token, marks the topic
// read, and takes new messages from the channel's chat socket (/ws/chat/{slug}), where the
// server publishes community:message and community:deleted events for every topic: the open
// topic's are shown, the others raise that topic's unread count. Message text goes in as DOM
// text nodes only (never HTML); the blocked authors of the reader are skipped.
//
// Like chat.js, the page exposes window.aethexChat {send, on(type, fn), me, slug, plainText},
// so a script made for the chat room works here unchanged when loaded after this one: emotes.js
// takes the emote map from the socket's first frame, sets plainText, and community messages
// show the channel's emotes.
(function () {
  "use strict";

  var root = document.getElementById("community");
  if (!root) return;
  var slug = root.getAttribute("data-slug");
  var topic = root.getAttribute("data-topic");
  var meId = parseInt(root.getAttribute("data-me"), 10) || null;
  var canModerate = root.getAttribute("data-can-moderate") === "true";
  var cap = parseInt(root.getAttribute("data-unread-cap"), 10) || 99;
  var pageSize = parseInt(root.getAttribute("data-page-size"), 10) || 50;
  var blocked = {};
  (root.getAttribute("data-blocked") || "").split(",").forEach(function (id) {
    if (id) blocked[id] = true;
  });
  var apiBase = "/api/channels/" + encodeURIComponent(slug) + "/community/topics/";
  var list = document.getElementById("community-messages");
  var olderBtn = document.getElementById("community-older");
  var statusEl = document.getElementById("community-status");
  var errorEl = document.getElementById("community-error");
  var form = document.getElementById("community-form");
  var input = document.getElementById("community-input");
  var counter = document.getElementById("community-counter");
  var shown = {};
  var newest = 0;
  var older = null;

  // -- the room hooks (same shape as chat.js's) ----------------------------------------------
  var listeners = {};
  var socket = null;
  var hooks = {
    send: function (frame) {
      if (socket && socket.readyState === 1) socket.send(JSON.stringify(frame));
    },
    on: function (type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
    me: function () { return meId ? { id: meId, can_moderate: canModerate } : null; },
    slug: slug,
    plainText: null,
  };
  window.aethexChat = hooks;

  var api = window.aethexApi.request;

  function showError(res) {
    if (!errorEl) return;
    errorEl.textContent = window.aethexApi.errorText(res, "Something went wrong; try again.");
    errorEl.hidden = false;
  }

  // -- rendering ------------------------------------------------------------------------------
  var URL_RE = /https?:\/\/[^\s<>"']+/g;

  function appendPlain(parent, text) {
    if (hooks.plainText) hooks.plainText(parent, text);
    else parent.appendChild(document.createTextNode(text));
  }

  function appendText(parent, text) {
    var last = 0, m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text)) !== null) {
      if (m.index > last) appendPlain(parent, text.slice(last, m.index));
      var a = document.createElement("a");
      a.href = m[0];
      a.rel = "noopener nofollow ugc";
      a.target = "_blank";
      a.textContent = m[0];
      parent.appendChild(a);
      last = m.index + m[0].length;
    }
    if (last < text.length) appendPlain(parent, text.slice(last));
  }

  function action(label, fn) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "chat-action";
    b.textContent = label;
    b.addEventListener("click", fn);
    return b;
  }

  function messageEl(m) {
    var li = document.createElement("li");
    li.className = "chat-message";
    li.setAttribute("data-id", String(m.id));
    var t = document.createElement("time");
    t.dateTime = m.created_at;
    var d = new Date(m.created_at);
    t.textContent = isNaN(d) ? "" : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
    li.appendChild(t);
    (m.user.badges || []).forEach(function (b) {
      var s = document.createElement("span");
      s.className = "chat-badge chat-badge-" + b;
      s.textContent = b;
      li.appendChild(s);
    });
    var who = document.createElement("span");
    who.className = "chat-author";
    who.textContent = m.user.display_name;
    who.title = "@" + m.user.username;
    li.appendChild(who);
    li.appendChild(document.createTextNode(": "));
    var body = document.createElement("span");
    body.className = "chat-content";
    body.dataset.raw = m.content;
    appendText(body, m.content);
    li.appendChild(body);
    var mine = meId !== null && m.user.id === meId;
    if (canModerate || mine) {
      var acts = document.createElement("span");
      acts.className = "chat-actions";
      acts.appendChild(action("Delete", function () {
        api("DELETE", "/api/community/messages/" + m.id).then(function (res) {
          if (res.ok) removeMessage(m.id); else showError(res);
        });
      }));
      if (canModerate && !mine) {
        var chan = "/api/channels/" + encodeURIComponent(slug);
        acts.appendChild(action("Timeout 10 min", function () {
          api("POST", chan + "/timeouts", { user_id: m.user.id, seconds: 600 }).then(function (res) {
            if (!res.ok) showError(res);
          });
        }));
        acts.appendChild(action("Ban", function () {
          api("POST", chan + "/bans", { user_id: m.user.id }).then(function (res) {
            if (!res.ok) showError(res);
          });
        }));
      }
      li.appendChild(acts);
    }
    return li;
  }

  function removeMessage(id) {
    var el = list && list.querySelector('[data-id="' + id + '"]');
    if (el) el.remove();
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function append(m) {
    if (shown[m.id] || blocked[String(m.user.id)]) return;
    shown[m.id] = true;
    var stick = nearBottom();
    list.appendChild(messageEl(m));
    if (m.id > newest) newest = m.id;
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // emotes.js (loaded after this) sets hooks.plainText and announces each change of the
  // channel's emote map: the messages already shown are drawn again from their text.
  document.addEventListener("aethex:emotes", function () {
    if (!list) return;
    Array.prototype.forEach.call(list.querySelectorAll(".chat-content"), function (body) {
      while (body.firstChild) body.removeChild(body.firstChild);
      appendText(body, body.dataset.raw || "");
    });
  });

  // -- history, read markers ------------------------------------------------------------------
  function loadPage(before) {
    var url = apiBase + encodeURIComponent(topic) + "/messages?limit=" + pageSize +
      (before ? "&before=" + before : "");
    return api("GET", url).then(function (res) {
      if (!res.ok) { showError(res); return; }
      var first = list.firstChild;
      res.data.messages.forEach(function (m) { // newest first: each goes above the previous
        if (shown[m.id] || blocked[String(m.user.id)]) return;
        shown[m.id] = true;
        if (m.id > newest) newest = m.id;
        var el = messageEl(m);
        list.insertBefore(el, first);
        first = el;
      });
      older = res.data.next_before;
      olderBtn.hidden = !older;
      statusEl.textContent = list.children.length ? "" : "No messages yet: say hello.";
      if (!before) list.scrollTop = list.scrollHeight;
    });
  }

  // The marker is stored at once after the first page, then at most every 200 ms while
  // messages arrive; data-read says what the server stored (tests wait for it).
  var readTimer = null;
  function storeRead() {
    readTimer = null;
    api("POST", apiBase + encodeURIComponent(topic) + "/read", newest ? { last_id: newest } : {})
      .then(function (res) {
        if (res.ok) root.setAttribute("data-read", String(res.data.last_read_id));
      });
  }
  function markRead(now) {
    if (!meId || !topic) return;
    if (now) { clearTimeout(readTimer); storeRead(); return; }
    if (readTimer === null) readTimer = setTimeout(storeRead, 200);
  }

  function bumpUnread(name) {
    var item = document.querySelector('#community-topic-list li[data-topic="' + name + '"]');
    if (!item) return;
    var badge = item.querySelector('[data-role="unread"]');
    var n = (parseInt(badge.getAttribute("data-count") || badge.textContent, 10) || 0) + 1;
    badge.setAttribute("data-count", String(n));
    badge.textContent = n >= cap ? cap + "+" : String(n);
    badge.hidden = false;
  }

  // -- real time: the channel's chat room -----------------------------------------------------
  var backoff = 1000;
  function connect() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(proto + "//" + location.host + "/ws/chat/" + encodeURIComponent(slug));
    socket.addEventListener("open", function () {
      backoff = 1000;
      root.setAttribute("data-connected", "true");
    });
    socket.addEventListener("message", function (ev) {
      var events;
      try { events = JSON.parse(ev.data); } catch (e) { return; }
      if (!Array.isArray(events)) return;
      events.forEach(handle);
    });
    socket.addEventListener("close", function () {
      root.setAttribute("data-connected", "false");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    });
  }

  function handle(e) {
    if (e.type === "community:message") {
      if (e.topic === topic && list) {
        append(e);
        statusEl.textContent = "";
        markRead();
      } else if (!(meId !== null && e.user.id === meId) && !blocked[String(e.user.id)]) {
        bumpUnread(e.topic);
      }
    } else if (e.type === "community:deleted" && e.topic === topic) {
      removeMessage(e.id);
    }
    (listeners[e.type] || []).forEach(function (fn) {
      try { fn(e); } catch (err) { if (window.console) console.error(err); }
    });
  }

  // -- posting --------------------------------------------------------------------------------
  if (form) {
    var max = parseInt(input.getAttribute("maxlength"), 10) || 500;
    input.addEventListener("input", function () {
      counter.textContent = input.value.length + "/" + max;
    });
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var content = input.value.trim();
      if (!content) return;
      errorEl.hidden = true;
      api("POST", apiBase + encodeURIComponent(topic) + "/messages", { content: content })
        .then(function (res) {
          if (!res.ok) { showError(res); return; }
          input.value = "";
          counter.textContent = "0/" + max;
          append(res.data.message);
          statusEl.textContent = "";
          markRead();
        });
    });
  }

  if (topic && list) {
    olderBtn.addEventListener("click", function () { if (older) loadPage(older); });
    loadPage(null).then(function () {
      markRead(true);
      root.setAttribute("data-loaded", "true");
    });
  }
  // The scripts that extend the room (emotes, polls, reactions...) are deferred after this one
  // and register their listeners when they run: connect once they all have (DOMContentLoaded
  // comes after every deferred script), or a first frame that arrived in between (a script
  // still downloading) reached no listener, and a history rendered before the emote map came
  // stayed text.
  if (document.readyState === "complete") connect();
  else document.addEventListener("DOMContentLoaded", connect, {once: true});
})();
