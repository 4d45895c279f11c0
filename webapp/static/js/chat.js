// Chat column of the viewer page: /ws/chat/{slug}, history then live events.
// Everything users wrote is put in the page with textContent (never innerHTML); only http(s)
// URLs become links, with rel="noopener nofollow ugc". No inline scripts (CSP).
"use strict";
(function () {
  var root = document.getElementById("chat");
  if (!root) return;
  var slug = root.dataset.slug;
  var list = document.getElementById("chat-messages");
  var statusEl = document.getElementById("chat-status");
  var errorEl = document.getElementById("chat-error");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var counter = document.getElementById("chat-counter");
  var jump = document.getElementById("chat-jump");
  var loginEl = document.getElementById("chat-login");
  var viewerList = document.getElementById("chat-viewer-list");
  var viewerCount = document.getElementById("chat-viewer-count");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  var MAX_SHOWN = 300;       // messages kept in the list
  var ws = null;
  var me = null;
  var maxLength = 500;
  var seen = new Set();      // message ids shown (history and live may overlap on join)
  var people = new Map();    // user id -> {username, display_name}
  var stick = true;          // follow new messages (false once the reader scrolls up)
  var retry = 1000;
  var errorTimer = null;

  function setStatus(text) { statusEl.textContent = text; statusEl.hidden = !text; }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(function () { errorEl.hidden = true; }, 6000);
  }

  // -- extensions (issue 16) ----------------------------------------------------------------
  // Other scripts (polls, reactions, emotes...) reach the room through window.aethexChat:
  // send(frame), on(type, fn) for room events chat.js does not handle itself, and plainText,
  // a function (parent, text, message) that appends a run of a message's text as DOM nodes
  // (the message event is passed for what the server decided about its author; emotes use it
  // to put images where codes are; it must build elements, never HTML strings).
  var listeners = {};
  var hooks = {
    send: function (frame) { send(frame); },
    on: function (type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
    me: function () { return me; },
    slug: slug,
    plainText: null,
  };
  window.aethexChat = hooks;

  function appendPlain(parent, text, msg) {
    if (hooks.plainText) hooks.plainText(parent, text, msg);
    else parent.appendChild(document.createTextNode(text));
  }

  // -- rendering --------------------------------------------------------------------------
  var URL_RE = /https?:\/\/[^\s<>"']+/g;

  function appendText(parent, text, msg) {
    var last = 0, m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text)) !== null) {
      if (m.index > last) appendPlain(parent, text.slice(last, m.index), msg);
      var href = m[0], ok = false;
      try { ok = ["http:", "https:"].indexOf(new URL(href).protocol) >= 0; } catch (e) { ok = false; }
      if (ok) {
        var a = document.createElement("a");
        a.href = href;
        a.rel = "noopener nofollow ugc";
        a.target = "_blank";
        a.textContent = href;
        parent.appendChild(a);
      } else {
        parent.appendChild(document.createTextNode(href));
      }
      last = m.index + href.length;
    }
    if (last < text.length) appendPlain(parent, text.slice(last), msg);
  }

  function timeOf(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }

  function actionButton(label, name, handler) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "chat-action";
    b.textContent = label;
    b.setAttribute("aria-label", name);
    b.addEventListener("click", handler);
    return b;
  }

  function render(m) {
    var li = document.createElement("li");
    li.className = "chat-message";
    li.dataset.id = m.id;
    li.dataset.user = m.user.id;
    var time = document.createElement("time");
    time.dateTime = m.created_at;
    time.textContent = timeOf(m.created_at);
    li.appendChild(time);
    (m.user.badges || []).forEach(function (b) { li.appendChild(badge(b)); });
    var name = document.createElement("strong");
    name.className = "chat-author";
    name.textContent = m.user.display_name;
    name.title = "@" + m.user.username;
    li.appendChild(name);
    li.appendChild(document.createTextNode(": "));
    var body = document.createElement("span");
    body.className = "chat-content";
    appendText(body, m.content, m);
    li.appendChild(body);
    if (me && me.id !== m.user.id) {
      var tools = document.createElement("span");
      tools.className = "chat-actions";
      var who = m.user.display_name;
      if (me.can_moderate) {
        tools.appendChild(actionButton("Delete", "Delete message from " + who, function () {
          send({type: "chat:delete", id: m.id});
        }));
        tools.appendChild(actionButton("Timeout", "Time out " + who + " for 10 minutes", function () {
          send({type: "chat:timeout", user_id: m.user.id, seconds: 600});
        }));
        tools.appendChild(actionButton("Ban", "Ban " + who + " from this chat", function () {
          if (window.confirm("Ban " + who + " from this chat?")) send({type: "chat:ban", user_id: m.user.id});
        }));
      }
      tools.appendChild(actionButton("Report", "Report this message from " + who, function () {
        api("POST", "/api/reports", {message_id: m.id, reason: "chat"})
          .then(function () { setStatus("Reported. Thank you."); }, function (e) { showError(e.message); });
      }));
      tools.appendChild(actionButton("Block", "Block " + who, function () {
        api("POST", "/api/users/" + m.user.id + "/block").then(function () {
          Array.prototype.forEach.call(list.querySelectorAll('[data-user="' + m.user.id + '"]'),
            function (el) { el.remove(); });
          setStatus("You will no longer see messages from " + who + ".");
        }, function (e) { showError(e.message); });
      }));
      li.appendChild(tools);
    }
    return li;
  }

  // Badges (issue 16): a short label, and a title saying what it means.
  var BADGES = {
    owner: ["Owner", "Channel owner"],
    moderator: ["Mod", "Moderator of this channel"],
    admin: ["Admin", "Site administrator"],
    follower: ["Follower", "Follows this channel"],
    "follower-1m": ["1 mo", "Follower for over a month"],
    "follower-6m": ["6 mo", "Follower for over 6 months"],
    "follower-1y": ["1 yr", "Follower for over a year"],
  };

  function badge(b) {
    var known = BADGES[b] || [b, b];
    var s = document.createElement("span");
    s.className = "chat-badge chat-badge-" + b + (b.indexOf("follower-") === 0 ? " chat-badge-follower" : "");
    s.textContent = known[0];
    s.title = known[1];
    s.dataset.badge = b;
    return s;
  }

  function atBottom() { return list.scrollHeight - list.scrollTop - list.clientHeight < 40; }

  function addMessages(messages) {
    var added = false;
    messages.forEach(function (m) {
      if (seen.has(m.id)) return;
      seen.add(m.id);
      list.appendChild(render(m));
      added = true;
    });
    while (list.children.length > MAX_SHOWN) {
      seen.delete(Number(list.firstElementChild.dataset.id));
      list.removeChild(list.firstElementChild);
    }
    if (!added) return;
    if (stick) list.scrollTop = list.scrollHeight;
    else jump.hidden = false;
  }

  // The viewer list, grouped by each person's role in the channel (in their presence face).
  var GROUPS = [["owner", "Owner"], ["moderator", "Moderators"], ["follower", "Followers"], ["viewer", "Viewers"]];

  function renderPeople() {
    viewerList.textContent = "";
    var names = Array.from(people.values()).sort(function (a, b) {
      return a.username < b.username ? -1 : 1;
    });
    GROUPS.forEach(function (g) {
      var members = names.filter(function (u) {
        var role = GROUPS.some(function (x) { return x[0] === u.role; }) ? u.role : "viewer";
        return role === g[0];
      });
      if (!members.length) return;
      var group = document.createElement("li");
      group.className = "chat-viewer-group";
      group.dataset.role = g[0];
      var head = document.createElement("span");
      head.className = "chat-viewer-group-name";
      head.textContent = g[1] + " (" + members.length + ")";
      group.appendChild(head);
      var ul = document.createElement("ul");
      members.forEach(function (u) {
        var li = document.createElement("li");
        li.textContent = u.display_name + " (@" + u.username + ")";
        ul.appendChild(li);
      });
      group.appendChild(ul);
      viewerList.appendChild(group);
    });
    viewerCount.textContent = String(names.length);
  }

  // A message's badges are today's roles: someone who became a moderator or a follower since
  // joining moves to that group (presence carries the role as of the join).
  function regroup(author) {
    var u = people.get(author.id);
    if (!u) return;
    var b = author.badges || [], role = "viewer";
    if (b.indexOf("owner") >= 0) role = "owner";
    else if (b.indexOf("moderator") >= 0) role = "moderator";
    else if (b.some(function (x) { return x.indexOf("follower") === 0; })) role = "follower";
    if (u.role === role) return;
    people.set(author.id, Object.assign({}, u, {role: role}));
    renderPeople();
  }

  // -- typing indicators (issue 16) -------------------------------------------------------------
  var typingEl = document.createElement("p");
  typingEl.className = "chat-typing";
  typingEl.id = "chat-typing";
  typingEl.setAttribute("aria-live", "polite");
  form.parentNode.insertBefore(typingEl, form.nextSibling);
  var typingCfg = {enabled: false, interval: 3, ttl: 6};
  var typers = new Map();    // user id -> {name, until}
  var typingTimer = null;
  var lastTyping = 0;

  function renderTyping() {
    var now = Date.now(), names = [], next = Infinity;
    typers.forEach(function (t, id) {
      if (t.until <= now) { typers.delete(id); return; }
      names.push(t.name);
      next = Math.min(next, t.until);
    });
    if (!names.length) typingEl.textContent = "";
    else if (names.length === 1) typingEl.textContent = names[0] + " is typing…";
    else if (names.length === 2) typingEl.textContent = names[0] + " and " + names[1] + " are typing…";
    else typingEl.textContent = "Several people are typing…";
    clearTimeout(typingTimer);
    if (next < Infinity) typingTimer = setTimeout(renderTyping, next - now + 20);
  }

  function noteTyping() {
    if (!typingCfg.enabled || !me || !ws || ws.readyState !== WebSocket.OPEN) return;
    if (!input.value.trim()) return;
    var now = Date.now();
    if (now - lastTyping < typingCfg.interval * 1000) return;
    lastTyping = now;
    ws.send(JSON.stringify({type: "typing:start"}));
  }

  // -- events -------------------------------------------------------------------------------
  function handle(ev) {
    switch (ev.type) {
      case "chat:history":
        me = ev.me;
        maxLength = ev.max_length || maxLength;
        input.maxLength = maxLength;
        list.textContent = "";
        seen.clear();
        people.clear();
        (ev.users || []).forEach(function (u) { people.set(u.id, u); });
        renderPeople();
        stick = true;
        addMessages(ev.messages || []);
        form.hidden = !me;
        loginEl.hidden = !!me;
        var notes = [];
        if (ev.settings && ev.settings.slow_mode_seconds) notes.push("Slow mode: " + ev.settings.slow_mode_seconds + " s");
        if (ev.settings && ev.settings.followers_only) notes.push("Followers-only chat");
        setStatus(notes.join(" · "));
        updateCounter();
        break;
      case "chat:message":
        addMessages([ev]);
        regroup(ev.user);
        if (typers.delete(ev.user.id)) renderTyping();
        break;
      case "typing:config":
        typingCfg = ev;
        break;
      case "typing:active":
        (ev.users || []).forEach(function (u) {
          if (me && u.id === me.id) return;
          typers.set(u.id, {name: u.display_name, until: Date.now() + (ev.ttl || 6) * 1000});
        });
        renderTyping();
        break;
      case "chat:deleted":
        var gone = list.querySelector('[data-id="' + ev.id + '"]');
        if (gone) gone.remove();
        break;
      case "chat:user-joined":
        (ev.users || []).forEach(function (u) { people.set(u.id, u); });
        renderPeople();
        break;
      case "chat:user-left":
        (ev.users || []).forEach(function (u) { people.delete(u.id); });
        renderPeople();
        break;
      case "chat:error":
        showError(ev.message);
        break;
      case "stream:status":
      case "stream:viewers":
        document.dispatchEvent(new CustomEvent("aethex:" + ev.type.replace(":", "-"), {detail: ev}));
        break;
    }
    (listeners[ev.type] || []).forEach(function (fn) {
      try { fn(ev); } catch (e) { if (window.console) console.error(e); }
    });
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/ws/chat/" + encodeURIComponent(slug));
    ws.onopen = function () { retry = 1000; };
    ws.onmessage = function (msg) {
      var events;
      try { events = JSON.parse(msg.data); } catch (e) { return; }
      if (Array.isArray(events)) events.forEach(handle);
    };
    ws.onclose = function (ev) {
      ws = null;
      if (ev.code === 1008) { setStatus(ev.reason || "This chat is closed to you."); return; }
      setStatus("Chat disconnected; reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    else showError("Not connected to the chat yet.");
  }

  function api(method, url, body) {
    var opts = {method: method, credentials: "same-origin",
                headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      if (r.ok) return r.json();
      return r.json().catch(function () { return {}; }).then(function (d) {
        throw new Error((d.error && d.error.message) || ("HTTP " + r.status));
      });
    });
  }

  // -- input ----------------------------------------------------------------------------------
  function updateCounter() {
    var n = input.value.trim().length;
    counter.textContent = n + "/" + maxLength;
    counter.classList.toggle("over", n > maxLength);
  }
  input.addEventListener("input", function () { updateCounter(); noteTyping(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (text.length > maxLength) { showError("The message is too long."); return; }
    send({type: "chat:send", content: text});
    lastTyping = 0;
    input.value = "";
    updateCounter();
  });

  list.addEventListener("scroll", function () {
    stick = atBottom();
    if (stick) jump.hidden = true;
  });
  jump.addEventListener("click", function () {
    stick = true;
    list.scrollTop = list.scrollHeight;
    jump.hidden = true;
    list.focus();
  });

  // The scripts that extend the room (emotes, polls, reactions...) are deferred after this one
  // and register their listeners when they run: connect once they all have (DOMContentLoaded
  // comes after every deferred script), or a first frame that arrived in between (a script
  // still downloading) reached no listener, and a history rendered before the emote map came
  // stayed text.
  if (document.readyState === "complete") connect();
  else document.addEventListener("DOMContentLoaded", connect, {once: true});
})();
