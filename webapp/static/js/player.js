// Player page: offline -> live -> offline by itself, low-latency hls.js playback with a
// quality menu and recovery from errors, and the chat drawer on narrow screens.
// The page polls /api/channels/{slug}/live; all text from it goes in with textContent.
// window.aethexPlayer = {hls, video, state} is there for tests and for debugging by hand.
(function () {
  "use strict";

  var root = document.getElementById("watch");
  if (!root) return;

  var POLL_OFFLINE_MS = 4000;   // offline: notice a new stream within a few seconds
  var POLL_LIVE_MS = 5000;      // live: keep title and viewer count fresh, notice the end
  // After the publisher leaves, the server keeps the playlists open for its reconnect grace
  // (a reconnecting encoder continues them) and then ends them: the player sees the end of
  // the playlist and goes offline ("ended" below). This timer is the fallback.
  var END_FALLBACK_MS = (Number(root.dataset.reconnectGrace) || 0) * 1000 + 12000;
  var MAX_LATENCY_S = 10;       // further behind the live edge than this: jump forward
  var RETRY_BASE_MS = 1000;
  var RETRY_MAX_MS = 8000;

  var video = document.getElementById("video");
  var playerBox = document.getElementById("player");
  var offlineBox = document.getElementById("offline");
  var offlineTitle = document.getElementById("offline-title");
  var errorBox = document.getElementById("player-error");
  var titleEl = document.getElementById("stream-title");
  var categoryEl = document.getElementById("stream-category");
  var tagsEl = document.getElementById("stream-tags");
  var badgeEl = document.getElementById("live-badge");
  var viewersEl = document.getElementById("viewers");
  var viewerCountEl = document.getElementById("viewer-count");
  var viewerNounEl = document.getElementById("viewer-noun");
  var qualitySelect = document.getElementById("quality");
  var announcer = document.getElementById("state-announcer");

  var statusUrl = root.dataset.statusUrl;
  var creator = root.dataset.creator;
  // This player's viewing session: in the master URL (a direct origin puts it in the media
  // playlist URLs and counts their reloads) and in the beacon, which is what counts players
  // whose playlists and parts come from a cache (Varnish, a CDN), where the origin never
  // sees their requests. The same id either way, so a player counts once.
  var session = (function () {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  })();
  var hlsUrl = root.dataset.hlsUrl + "?session=" + session;
  var beaconUrl = root.dataset.beaconUrl;
  var BEACON_MS = (Number(root.dataset.beaconInterval) || 5) * 1000;

  var hls = null;
  var state = "offline";         // offline | starting | live
  var streamId = null;           // the stream being played
  var endedStreamId = null;      // a stream whose playlist ended: do not restart it
  var pollTimer = null;
  var retryTimer = null;
  var endTimer = null;
  var retries = 0;
  var lastMediaRecovery = -Infinity;
  var numberFormat = new Intl.NumberFormat();

  window.aethexPlayer = {
    get hls() { return hls; },
    video: video,
    get state() { return state; }
  };

  // -- page state ---------------------------------------------------------------------------

  function setState(next) {
    if (next === state) return;
    state = next;
    root.dataset.state = next;
    playerBox.hidden = next !== "live";
    offlineBox.hidden = next === "live";
    offlineTitle.textContent = creator + (next === "starting" ? " is going live…" : " is offline");
    if (next !== "live") showError("");
    announcer.textContent = next === "live" ? creator + " is live"
      : next === "starting" ? creator + " is going live" : creator + " is offline";
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function updateMeta(info) {
    if (typeof info.title === "string" && titleEl.textContent !== info.title) {
      titleEl.textContent = info.title;
      document.title = info.title + " · " + creator + " · AeThex Live";
    }
    categoryEl.textContent = info.category || "";
    categoryEl.hidden = !info.category;
    var tags = Array.isArray(info.tags) ? info.tags.map(String) : [];
    var shown = Array.prototype.map.call(tagsEl.children, function (li) { return li.textContent; });
    if (shown.join("\n") !== tags.join("\n")) {
      tagsEl.replaceChildren.apply(tagsEl, tags.map(function (tag) {
        var li = document.createElement("li");
        li.textContent = tag;  // text, never markup
        return li;
      }));
    }
    tagsEl.hidden = tags.length === 0;
    badgeEl.hidden = !info.live;
    viewersEl.hidden = !info.live;
    var n = Number(info.viewers) || 0;
    viewerCountEl.textContent = numberFormat.format(n);
    viewerNounEl.textContent = n === 1 ? "viewer" : "viewers";
  }

  function apply(info) {
    updateMeta(info);
    if (info.live) {
      clearTimeout(endTimer);
      endTimer = null;
      if (state === "live") {
        // A reconnected encoder gets a new stream id but continues the same playlists.
        streamId = info.stream_id;
        return;
      }
      if (!info.playable) {
        if (state === "offline") setState("starting");
        return;
      }
      if (info.stream_id !== endedStreamId) startPlayback(info.stream_id);
    } else if (state === "live") {
      if (endTimer === null) endTimer = setTimeout(stopPlayback, END_FALLBACK_MS);
    } else {
      setState("offline");
    }
  }

  function schedulePoll(ms) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, ms);
  }

  function poll() {
    clearTimeout(pollTimer);
    fetch(statusUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (info) { if (info) apply(info); })
      .catch(function () { /* the server is restarting or the network is down: try again */ })
      .then(function () {
        schedulePoll(state === "offline" || state === "starting" ? POLL_OFFLINE_MS : POLL_LIVE_MS);
      });
  }

  // -- playback ------------------------------------------------------------------------------

  function startPlayback(id) {
    destroyHls();
    streamId = id;
    retries = 0;
    setState("live");
    if (window.Hls && window.Hls.isSupported()) {
      createHls();
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      // Safari (and iOS) play LL-HLS natively.
      video.src = hlsUrl;
      play();
    } else {
      showError("This browser cannot play HLS video.");
    }
  }

  function stopPlayback() {
    clearTimeout(endTimer);
    endTimer = null;
    destroyHls();
    streamId = null;
    setState("offline");
  }

  function createHls() {
    var Hls = window.Hls;
    var h = new Hls({
      lowLatencyMode: true,
      // Target latency is the server's PART-HOLD-BACK; drift behind it is caught up by
      // playing up to 1.5x, and a viewer far behind jumps ahead (see checkLatency).
      maxLiveSyncPlaybackRate: 1.5,
      backBufferLength: 30,
      enableWorker: true
    });
    hls = h;
    h.on(Hls.Events.MANIFEST_PARSED, function () {
      buildQualityMenu();
      play();
    });
    h.on(Hls.Events.LEVEL_SWITCHED, updateQualityLabel);
    h.on(Hls.Events.FRAG_BUFFERED, function () {
      retries = 0;
      showError("");
    });
    h.on(Hls.Events.ERROR, onError);
    h.loadSource(hlsUrl);
    h.attachMedia(video);
  }

  function destroyHls() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (hls) {
      hls.destroy();
      hls = null;
    }
    if (video.getAttribute("src")) {
      video.removeAttribute("src");
      video.load();
    }
    resetQualityMenu();
  }

  function play() {
    var p = video.play();
    if (p && p.catch) p.catch(function () { /* autoplay refused: the controls offer play */ });
  }

  function isManifestError(details) {
    var E = window.Hls.ErrorDetails;
    return details === E.MANIFEST_LOAD_ERROR || details === E.MANIFEST_LOAD_TIMEOUT ||
      details === E.MANIFEST_PARSING_ERROR || details === E.LEVEL_EMPTY_ERROR;
  }

  // A 404 for what the master named: the stream's URLs changed (it went live again on another
  // origin of a cluster, with a new broadcast token), so load the master again.
  function gone(data) {
    return Boolean(data.response && data.response.code === 404);
  }

  function onError(event, data) {
    if (!data.fatal) return;
    var Hls = window.Hls;
    var h = hls;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      // recoverMediaError() once; a second media error soon after means starting over.
      var now = performance.now();
      if (now - lastMediaRecovery > 5000) {
        lastMediaRecovery = now;
        h.recoverMediaError();
        return;
      }
      retry(h, recreate);
    } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR && h.levels.length &&
               !isManifestError(data.details) && !gone(data)) {
      showError("Connection lost, reconnecting…");
      retry(h, function () { h.startLoad(); });
    } else {
      retry(h, recreate);
    }
  }

  // Run fn after a growing delay, unless this hls instance has been replaced meanwhile.
  function retry(h, fn) {
    var delay = Math.min(RETRY_BASE_MS * Math.pow(2, retries), RETRY_MAX_MS);
    retries += 1;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(function () {
      retryTimer = null;
      if (hls === h && state === "live") fn();
    }, delay);
  }

  function recreate() {
    var kept = retries;
    destroyHls();
    retries = kept;
    if (state === "live") createHls();
  }

  function checkLatency() {
    if (!hls || video.paused || state !== "live") return;
    var latency = hls.latency;
    var target = hls.liveSyncPosition;
    if (latency > MAX_LATENCY_S && target !== null && isFinite(target)) {
      video.currentTime = target;
    }
  }

  video.addEventListener("ended", function () {
    // The live playlist ended (EXT-X-ENDLIST): the broadcast is over.
    if (state !== "live") return;
    endedStreamId = streamId;
    stopPlayback();
    poll();
  });

  // -- viewer beacon ---------------------------------------------------------------------------

  function renditionName() {
    // The playing level's URL is {token}/{rendition}/index.m3u8: the rendition for the
    // analytics' rendition mix.
    var level = hls && hls.levels[hls.currentLevel];
    var parts = level && level.url ? String(level.url).split("?")[0].split("/") : [];
    return parts.length >= 2 ? parts[parts.length - 2] : "";
  }

  function beacon() {
    if (state !== "live" || video.paused || !beaconUrl) return;
    var url = beaconUrl + "?session=" + session;
    var rendition = renditionName();
    if (rendition) url += "&rendition=" + encodeURIComponent(rendition);
    fetch(url, { cache: "no-store", credentials: "omit" })
      .catch(function () { /* counting is best effort: the next beacon tries again */ });
  }

  // -- quality menu --------------------------------------------------------------------------

  function levelLabel(level) {
    if (level.height) return level.height + "p";
    if (level.bitrate) return Math.round(level.bitrate / 1000) + " kbit/s";
    return "Level";
  }

  function resetQualityMenu() {
    while (qualitySelect.options.length > 1) qualitySelect.remove(1);
    qualitySelect.options[0].textContent = "Auto";
    qualitySelect.value = "-1";
    qualitySelect.disabled = true;
  }

  function buildQualityMenu() {
    resetQualityMenu();
    var order = hls.levels.map(function (level, index) { return { level: level, index: index }; });
    order.sort(function (a, b) {
      return (b.level.height - a.level.height) || (b.level.bitrate - a.level.bitrate);
    });
    order.forEach(function (item) {
      var opt = document.createElement("option");
      opt.value = String(item.index);
      opt.textContent = levelLabel(item.level);
      qualitySelect.appendChild(opt);
    });
    qualitySelect.value = hls.autoLevelEnabled ? "-1" : String(hls.currentLevel);
    qualitySelect.disabled = hls.levels.length === 0;
    updateQualityLabel();
  }

  function updateQualityLabel() {
    if (!hls) return;
    var auto = qualitySelect.options[0];
    var level = hls.levels[hls.currentLevel];
    auto.textContent = hls.autoLevelEnabled && level ? "Auto (" + levelLabel(level) + ")" : "Auto";
  }

  qualitySelect.addEventListener("change", function () {
    if (!hls) return;
    var index = parseInt(qualitySelect.value, 10);
    if (index < 0) {
      hls.nextLevel = -1;       // back to ABR from the next fragment on, no rebuffering
    } else {
      hls.currentLevel = index; // the viewer asked for this one: switch now
    }
    updateQualityLabel();
  });

  // -- chat drawer (narrow screens) ----------------------------------------------------------

  var chatPanel = document.getElementById("chat-panel");
  var chatToggle = document.getElementById("chat-toggle");
  var chatClose = document.getElementById("chat-close");

  function setChatOpen(open, restoreFocus) {
    chatPanel.classList.toggle("open", open);
    chatToggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      chatClose.focus();
    } else if (restoreFocus) {
      chatToggle.focus();
    }
  }

  chatToggle.addEventListener("click", function () {
    setChatOpen(!chatPanel.classList.contains("open"), false);
  });
  chatClose.addEventListener("click", function () { setChatOpen(false, true); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && chatPanel.classList.contains("open")) setChatOpen(false, true);
  });

  // -- start -----------------------------------------------------------------------------------

  setInterval(checkLatency, 2000);
  setInterval(beacon, BEACON_MS);
  video.addEventListener("playing", beacon);  // counted from the first frame, not 5 s later
  state = root.dataset.state || "offline";
  if (state === "live") {
    state = "starting";  // startPlayback switches to live
    startPlayback(Number(root.dataset.streamId));
  }
  poll();
})();
