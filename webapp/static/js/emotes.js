// Emotes in the chat (webapp.emotes): where a message has an emote's code as a whole word, an
// <img> is put in its place. The code-to-image map comes from the server in the socket's first
// frame (emotes:map) and with every change (emotes:changed); a channel's emote wins over a
// global one with the same code. Rendering is text-safe by construction: messages are split
// into words, and each word becomes a text node or an <img> built here from the map (alt = the
// code); no HTML string is ever parsed. Follower-only emotes render only in messages the server
// marked (follower_emotes), since only the server knows who follows.
// Also here: the picker beside the chat input, and the list on the channel's home. On a page
// without the live chat, an element with data-emotes-channel="{slug}" (the chat replay beside
// a past broadcast) makes it fetch that channel's map once; window.aethexEmotes.words(parent,
// text, follower) then puts a run of text with its emotes into parent (replay.js uses it), and
// elements marked data-emote-text are rendered again when the map arrives (the event
// aethex:emotes says it did). Follower-only emotes stay text there: such pages do not say who
// follows.
(function () {
  "use strict";
  var chat = window.aethexChat;
  var host = document.querySelector("[data-emotes-channel]");
  if (!chat && !host) return;
  var PREFIX = "/emotes/files/";
  var WORDS = /(\s+)/;
  var globalSet = [];
  var channelSet = [];
  var byCode = new Map();

  function safeUrl(u) {
    return typeof u === "string" && u.indexOf(PREFIX) === 0 ? u : null;
  }

  function image(e, size, className) {
    var img = document.createElement("img");
    var one = safeUrl(e.urls["28"]), two = safeUrl(e.urls["56"]), four = safeUrl(e.urls["112"]);
    if (size === 56) { one = two; two = four; four = null; }
    img.className = className;
    if (one) img.src = one;
    img.srcset = [one && one + " 1x", two && two + " 2x", four && four + " 4x"]
      .filter(Boolean).join(", ");
    img.alt = e.code;
    img.title = e.code;
    img.width = size;
    img.height = size;
    img.decoding = "async";
    img.draggable = false;
    return img;
  }

  function rebuildMap() {
    byCode = new Map();
    globalSet.forEach(function (e) { byCode.set(e.code, e); });
    channelSet.forEach(function (e) { byCode.set(e.code, e); });  // the channel's wins
  }

  // -- messages ---------------------------------------------------------------------------
  // The words of ``text`` into ``parent``: emotes as images, the rest as text nodes.
  function words(parent, text, follower) {
    if (!byCode.size) { parent.appendChild(document.createTextNode(text)); return; }
    var pending = "";
    text.split(WORDS).forEach(function (word) {
      var e = word ? byCode.get(word) : undefined;
      if (e && (!e.follower_only || follower)) {
        if (pending) parent.appendChild(document.createTextNode(pending));
        pending = "";
        parent.appendChild(image(e, 28, "chat-emote"));
      } else {
        pending += word;
      }
    });
    if (pending) parent.appendChild(document.createTextNode(pending));
  }

  // Whether the author may use follower-only emotes, as the server said: the send path's mark,
  // or (a history the room read back from the database has no mark) the badges it gives
  // followers, owners, moderators and admins.
  var PRIVILEGED = ["owner", "moderator", "admin", "follower"];
  function mayUseFollowerEmotes(msg) {
    if (!msg) return false;
    if (msg.follower_emotes) return true;
    var badges = (msg.user && msg.user.badges) || [];
    return badges.some(function (b) {
      return typeof b === "string" && (PRIVILEGED.indexOf(b) >= 0 || b.indexOf("follower-") === 0);
    });
  }

  window.aethexEmotes = {words: words};
  // chat.js calls this for each run of a message's text between links; the message's body
  // keeps the follower mark for re-rendering when the map changes.
  if (chat) {
    chat.plainText = function (parent, text, msg) {
      var follower = mayUseFollowerEmotes(msg);
      if (follower && parent.dataset) parent.dataset.followerEmotes = "1";
      words(parent, text, follower);
    };
  }

  // Messages rendered before the map changed (the history comes before the map in the first
  // frame): their words again, links kept as they are.
  function rerenderAll() {
    document.querySelectorAll(
      "#chat-messages .chat-content, [data-emote-text]"
    ).forEach(function (body) {
      var follower = body.dataset.followerEmotes === "1";
      var frag = document.createDocumentFragment();
      var text = "";
      Array.prototype.slice.call(body.childNodes).forEach(function (node) {
        if (node.nodeType === Node.TEXT_NODE) {
          text += node.data;
        } else if (node.nodeName === "IMG" && node.classList.contains("chat-emote")) {
          text += node.alt;
        } else {
          if (text) { words(frag, text, follower); text = ""; }
          frag.appendChild(node);
        }
      });
      if (text) words(frag, text, follower);
      while (body.firstChild) body.removeChild(body.firstChild);
      body.appendChild(frag);
    });
  }

  // -- picker -----------------------------------------------------------------------------
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var toggle = null, panel = null;

  function insertCode(code) {
    var start = input.selectionStart == null ? input.value.length : input.selectionStart;
    var end = input.selectionEnd == null ? start : input.selectionEnd;
    var before = input.value.slice(0, start), after = input.value.slice(end);
    var lead = before && !/\s$/.test(before) ? " " : "";
    var tail = /^\s/.test(after) ? "" : " ";
    input.value = before + lead + code + tail + after;
    var caret = (before + lead + code + tail).length;
    input.setSelectionRange(caret, caret);
    input.dispatchEvent(new Event("input", {bubbles: true}));
  }

  function closePicker(focusToggle) {
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    if (focusToggle) toggle.focus();
  }

  function buildPicker() {
    if (!form || !input) return;
    if (!toggle) {
      toggle = document.createElement("button");
      toggle.type = "button";
      toggle.className = "button button-small emote-picker-toggle";
      toggle.id = "emote-picker-toggle";
      toggle.textContent = "☺";
      toggle.setAttribute("aria-label", "Emotes");
      toggle.setAttribute("aria-haspopup", "true");
      toggle.setAttribute("aria-expanded", "false");
      toggle.setAttribute("aria-controls", "emote-picker");
      panel = document.createElement("div");
      panel.className = "emote-picker";
      panel.id = "emote-picker";
      panel.setAttribute("role", "group");
      panel.setAttribute("aria-label", "Emotes");
      panel.hidden = true;
      var row = form.querySelector(".chat-form-row") || form;
      row.insertBefore(toggle, row.querySelector(".chat-send"));
      form.appendChild(panel);
      toggle.addEventListener("click", function () {
        if (panel.hidden) {
          panel.hidden = false;
          toggle.setAttribute("aria-expanded", "true");
          var first = panel.querySelector("button");
          if (first) first.focus();
        } else {
          closePicker(true);
        }
      });
      panel.addEventListener("keydown", function (ev) {
        var items = Array.prototype.slice.call(panel.querySelectorAll("button"));
        var i = items.indexOf(document.activeElement);
        if (ev.key === "Escape") { ev.preventDefault(); closePicker(true); }
        else if ((ev.key === "ArrowRight" || ev.key === "ArrowDown") && i >= 0) {
          ev.preventDefault(); items[(i + 1) % items.length].focus();
        } else if ((ev.key === "ArrowLeft" || ev.key === "ArrowUp") && i >= 0) {
          ev.preventDefault(); items[(i - 1 + items.length) % items.length].focus();
        }
      });
      document.addEventListener("click", function (ev) {
        if (panel && !panel.hidden && !panel.contains(ev.target) && ev.target !== toggle) {
          closePicker(false);
        }
      });
    }
    while (panel.firstChild) panel.removeChild(panel.firstChild);
    var all = Array.from(byCode.values()).sort(function (a, b) {
      return (a.scope === b.scope ? 0 : a.scope === "channel" ? -1 : 1) ||
        a.code.localeCompare(b.code);
    });
    all.forEach(function (e) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "emote-picker-item";
      b.dataset.code = e.code;
      b.title = e.follower_only ? e.code + " (followers only)" : e.code;
      b.setAttribute("aria-label", b.title);
      b.appendChild(image(e, 28, "emote-picker-img"));
      b.addEventListener("click", function () {
        insertCode(e.code);
        closePicker(false);
        input.focus();
      });
      panel.appendChild(b);
    });
    toggle.hidden = all.length === 0;
    if (!all.length) closePicker(false);
  }

  // -- the channel's home -----------------------------------------------------------------
  function renderHome() {
    var section = document.getElementById("channel-emotes");
    var list = document.getElementById("channel-emote-list");
    if (!section || !list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    channelSet.forEach(function (e) {
      var li = document.createElement("li");
      li.className = "emote-card";
      li.dataset.code = e.code;
      li.appendChild(image(e, 56, "emote-card-img"));
      var name = document.createElement("code");
      name.textContent = e.code;
      li.appendChild(name);
      if (e.follower_only) {
        var note = document.createElement("span");
        note.className = "hint";
        note.textContent = "followers";
        li.appendChild(note);
      }
      list.appendChild(li);
    });
    section.hidden = channelSet.length === 0;
  }

  function valid(list) {
    return Array.isArray(list) ? list.filter(function (e) {
      return e && typeof e.code === "string" && e.urls && typeof e.urls === "object";
    }) : [];
  }

  function changed() {
    rebuildMap();
    rerenderAll();
    buildPicker();
    renderHome();
    document.dispatchEvent(new CustomEvent("aethex:emotes", {detail: {map: byCode}}));
  }

  if (!chat) {
    fetch("/api/channels/" + encodeURIComponent(host.dataset.emotesChannel) + "/emotes")
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) return;
        globalSet = valid(body.global);
        channelSet = valid(body.emotes);
        rebuildMap();
        rerenderAll();
        document.dispatchEvent(new CustomEvent("aethex:emotes", {detail: {map: byCode}}));
      })
      .catch(function () { /* the text stays text */ });
    return;
  }
  chat.on("emotes:map", function (ev) {
    globalSet = valid(ev.global);
    channelSet = valid(ev.channel);
    changed();
  });
  chat.on("emotes:changed", function (ev) {
    if (ev.scope === "global") globalSet = valid(ev.emotes);
    else if (ev.scope === "channel") channelSet = valid(ev.emotes);
    changed();
  });
})();
