// Chat replay beside a past broadcast's player (webapp.replay): as the video plays, the
// messages sent up to that moment appear in order. Windows of the chat come from
// GET /api/videos/{id}/chat, the next one fetched before playback needs it; a seek clears the
// list and loads the window around the new position. All text goes in with textContent.
(function () {
  "use strict";
  var root = document.getElementById("chat-replay");
  var video = document.getElementById("vod-video");
  if (!root || !video) return;
  var list = document.getElementById("chat-replay-list");
  var note = document.getElementById("chat-replay-note");
  var base = "/api/videos/" + encodeURIComponent(root.dataset.video) + "/chat";
  var WINDOW = 60;   // seconds fetched at a time (the server's default window)
  var BEHIND = 60;   // after a seek: the messages of this long before the position show too
  var AHEAD = 20;    // fetch the next window when playback is this close to the loaded end
  var KEEP = 150;    // messages kept in the list
  var generation = 0;
  var buffer = [];   // fetched, not yet shown, in order
  var loadedFrom = 0;
  var loadedTo = 0;  // fetched windows cover [loadedFrom, loadedTo)
  var fetching = false;
  var retryAt = 0;
  var lastTime = 0;
  var duration = Infinity;

  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var rest = String(s % 60).padStart(2, "0");
    return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  }

  function item(m) {
    var li = document.createElement("li");
    li.className = "chat-replay-message";
    li.dataset.offset = String(m.offset);
    li.dataset.id = String(m.id);
    var time = document.createElement("time");
    time.textContent = clock(m.offset);
    var author = document.createElement("strong");
    author.className = "chat-replay-author";
    author.textContent = m.user.display_name;
    var text = document.createElement("span");
    text.className = "chat-replay-text";
    // Emote codes become images (emotes.js builds them from the channel's map; plain text
    // otherwise).
    text.dataset.emoteText = "";
    if (window.aethexEmotes) window.aethexEmotes.words(text, m.content, false);
    else text.textContent = m.content;
    li.append(time, author, " ", text);
    return li;
  }

  function show(t) {
    var added = false;
    while (buffer.length && buffer[0].offset <= t) {
      list.appendChild(item(buffer.shift()));
      added = true;
    }
    if (!added) return;
    while (list.children.length > KEEP) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
    note.hidden = true;
  }

  function end() {
    return isFinite(duration) ? duration : (isFinite(video.duration) ? video.duration : Infinity);
  }

  function load(from, to, cursor, gen) {
    fetching = true;
    var url = base + "?from=" + from.toFixed(3) + "&to=" + to.toFixed(3) +
      (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.ok) return r.json();
        if (r.status === 401 || r.status === 403 || r.status === 404) retryAt = Infinity;
        return Promise.reject(new Error(String(r.status)));
      })
      .then(function (body) {
        if (gen !== generation) return;  // a seek started over meanwhile
        if (typeof body.duration === "number" && body.duration > 0) duration = body.duration;
        Array.prototype.push.apply(buffer, body.messages);
        if (body.next_cursor) {  // a busy window: the rest of it, from where this page ended
          show(video.currentTime || 0);
          load(from, to, body.next_cursor, gen);
          return;
        }
        fetching = false;
        loadedTo = to;
        root.dataset.loadedTo = String(to);
        root.dataset.state = "ready";
        tick();
      })
      .catch(function () {
        if (gen !== generation) return;
        fetching = false;
        if (retryAt === Infinity) {  // not for this viewer (a chat for logged-in users only)
          root.dataset.state = "unavailable";
          note.textContent = "The chat of this video is not available to you.";
          note.hidden = false;
          return;
        }
        retryAt = Date.now() + 5000;
        root.dataset.state = "error";
      });
  }

  function reset(t) {
    generation += 1;
    list.textContent = "";
    note.hidden = false;
    buffer = [];
    fetching = false;
    retryAt = 0;
    loadedFrom = loadedTo = Math.max(0, t - BEHIND);
    lastTime = t;
    root.dataset.state = "loading";
    root.dataset.loadedTo = "";
    load(loadedFrom, t + WINDOW, null, generation);
  }

  function tick() {
    var t = video.currentTime || 0;
    // Backwards, or far past what is loaded, without a seeking event: start over there.
    if (t + 0.5 < lastTime || t < loadedFrom || (!fetching && t > loadedTo + WINDOW)) {
      reset(t);
      return;
    }
    lastTime = t;
    show(t);
    if (!fetching && loadedTo < end() && loadedTo - t < AHEAD && Date.now() >= retryAt) {
      load(loadedTo, loadedTo + WINDOW, null, generation);
    }
  }

  video.addEventListener("seeking", function () { reset(video.currentTime || 0); });
  video.addEventListener("timeupdate", tick);
  setInterval(tick, 250);  // smoother than timeupdate alone (about 4 a second at best)
  reset(video.currentTime || 0);
})();
