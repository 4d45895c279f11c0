// Watch history: while a logged-in viewer's player is playing, tell the server every so often
// (POST /api/watch/heartbeat with the page's CSRF token). The server credits the time between
// two heartbeats (never more than it measured) to this user; it decides who from the session.
// Loaded only for logged-in viewers; reads window.aethexPlayer (player.js).
(function () {
  "use strict";

  var root = document.getElementById("watch");
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!root || !meta || !meta.content) return;

  var DEFAULT_INTERVAL_S = 30;
  var slug = root.dataset.slug;
  var timer = null;
  var sending = false;
  var lastSent = 0;

  function playing() {
    var p = window.aethexPlayer;
    if (!p || p.state !== "live") return false;
    var v = p.video;
    return !!v && !v.paused && !v.ended && v.readyState > 2;
  }

  function schedule(seconds) {
    clearTimeout(timer);
    timer = setTimeout(beat, Math.max(5, seconds || DEFAULT_INTERVAL_S) * 1000);
  }

  function beat() {
    if (sending || !playing()) { schedule(DEFAULT_INTERVAL_S); return; }
    sending = true;
    lastSent = Date.now();
    fetch("/api/watch/heartbeat", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": meta.content },
      body: JSON.stringify({ slug: slug })
    })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (info) { schedule(info && Number(info.next_in)); })
      .catch(function () { schedule(DEFAULT_INTERVAL_S); })
      .then(function () { sending = false; });
  }

  // Start (or restart) a session as soon as playback starts; then every next_in seconds.
  // A stall and resume fires "playing" again: at most one heartbeat per 5 s from it.
  document.addEventListener("playing", function () {
    if (!sending && Date.now() - lastSent > 5000) beat();
  }, true);
  schedule(DEFAULT_INTERVAL_S);
})();
