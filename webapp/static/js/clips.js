// Clips (webapp.clips): the live page's Clip button and top clips list, the draft editor,
// the video page's clip form, and the clip player (hls.js where MediaSource exists, else the
// MP4). Each part runs only when its elements are on the page.
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  function api(method, url, body) {
    var init = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf }
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var message = (data && data.error && data.error.message) || ("HTTP " + response.status);
          throw new Error(message);
        }
        return data;
      });
    });
  }

  function showError(el, err) {
    if (!el) return;
    el.textContent = err && err.message ? err.message : String(err);
    el.hidden = false;
  }

  // -- player ---------------------------------------------------------------------------
  function attach(video) {
    var hlsUrl = video.dataset.hls;
    var mp4 = video.dataset.mp4;
    if (hlsUrl && window.Hls && window.Hls.isSupported()) {
      var hls = new window.Hls({ enableWorker: true });
      hls.loadSource(hlsUrl);
      hls.attachMedia(video);
      video.hlsPlayer = hls;
    } else if (hlsUrl && video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = hlsUrl;
    } else if (mp4) {
      video.src = mp4;
    }
  }
  var player = document.getElementById("clip-video");
  if (player) attach(player);

  // -- clip page: processing state and delete ---------------------------------------------
  var page = document.getElementById("clip-page");
  if (page && page.dataset.status === "processing") {
    var poll = function () {
      api("GET", page.dataset.api).then(function (clip) {
        if (clip.status === "processing") window.setTimeout(poll, 1000);
        else window.location.reload();
      }, function () { window.setTimeout(poll, 3000); });
    };
    window.setTimeout(poll, 1000);
  }
  var del = document.getElementById("clip-delete");
  if (del && page) {
    del.addEventListener("click", function () {
      if (!window.confirm("Delete this clip?")) return;
      api("DELETE", page.dataset.api).then(function (res) {
        var channel = document.getElementById("clip-channel");
        window.location.href = channel ? channel.getAttribute("href") : "/";
        return res;
      }, function (err) { showError(document.getElementById("clip-error"), err); });
    });
  }

  // -- live page: Clip button -------------------------------------------------------------
  var clipButton = document.getElementById("clip-button");
  if (clipButton) {
    var watch = document.getElementById("watch");
    if (watch && window.MutationObserver) {
      // The player page switches between live and offline by itself; so does the button.
      var sync = function () { clipButton.hidden = watch.dataset.state === "offline"; };
      new window.MutationObserver(sync).observe(watch, { attributes: true, attributeFilter: ["data-state"] });
      sync();
    }
    clipButton.addEventListener("click", function () {
      clipButton.disabled = true;
      var error = document.getElementById("clip-button-error");
      if (error) error.hidden = true;
      api("POST", clipButton.dataset.url, { seconds: parseFloat(clipButton.dataset.seconds) })
        .then(function (clip) { window.location.href = clip.edit_url || clip.url; }, function (err) {
          clipButton.disabled = false;
          showError(error, err);
        });
    });
  }

  // -- top clips --------------------------------------------------------------------------
  var top = document.getElementById("top-clips");
  if (top) {
    var list = document.getElementById("clip-list");
    var empty = document.getElementById("no-clips");
    var buttons = top.querySelectorAll("[data-period]");
    var load = function (period) {
      Array.prototype.forEach.call(buttons, function (b) {
        b.setAttribute("aria-pressed", b.dataset.period === period ? "true" : "false");
      });
      api("GET", top.dataset.url + "?period=" + encodeURIComponent(period)).then(function (data) {
        list.textContent = "";
        data.clips.forEach(function (clip) {
          var li = document.createElement("li");
          li.className = "broadcast-card clip-card";
          var a = document.createElement("a");
          a.className = "broadcast-link";
          a.href = clip.url;
          var thumb = document.createElement("span");
          thumb.className = "thumb";
          if (clip.thumbnail_url) {
            var img = document.createElement("img");
            img.src = clip.thumbnail_url;
            img.alt = "";
            img.width = 320;
            img.height = 180;
            img.loading = "lazy";
            thumb.appendChild(img);
          } else {
            var ph = document.createElement("span");
            ph.className = "thumb-placeholder";
            thumb.appendChild(ph);
          }
          if (clip.duration) {
            var d = document.createElement("span");
            d.className = "thumb-duration";
            d.textContent = Math.round(clip.duration) + " s";
            thumb.appendChild(d);
          }
          var title = document.createElement("span");
          title.className = "broadcast-title";
          title.textContent = clip.title;
          var metaLine = document.createElement("span");
          metaLine.className = "broadcast-meta";
          metaLine.textContent = clip.views + (clip.views === 1 ? " view" : " views") +
            (clip.clipper ? " · " + clip.clipper.name : "");
          a.appendChild(thumb);
          a.appendChild(title);
          a.appendChild(metaLine);
          li.appendChild(a);
          list.appendChild(li);
        });
        empty.hidden = data.clips.length > 0;
      }, function () { empty.hidden = false; });
    };
    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () { load(b.dataset.period); });
    });
    load("7d");
  }

  // -- editors: a range inside [lo, hi] picked on a player --------------------------------
  function rangeEditor(opts) {
    var start = opts.start, end = opts.end, video = opts.video;
    function length() {
      var s = parseFloat(start.value), e = parseFloat(end.value);
      if (opts.lengthEl) {
        opts.lengthEl.textContent = isFinite(s) && isFinite(e) ? "Length: " + (e - s).toFixed(2) + " s" : "";
      }
    }
    function bind(button, input, handle) {
      if (button && video) {
        button.addEventListener("click", function () {
          input.value = (opts.offset + video.currentTime).toFixed(2);
          if (handle) handle.value = video.currentTime.toFixed(2);
          length();
        });
      }
      if (handle) {
        handle.addEventListener("input", function () {
          input.value = (opts.offset + parseFloat(handle.value)).toFixed(2);
          if (video) video.currentTime = parseFloat(handle.value);
          length();
        });
      }
      input.addEventListener("input", function () {
        var v = parseFloat(input.value);
        if (handle && isFinite(v)) handle.value = (v - opts.offset).toFixed(2);
        length();
      });
    }
    bind(opts.setStart, start, opts.startHandle);
    bind(opts.setEnd, end, opts.endHandle);
    length();
  }

  var editor = document.getElementById("clip-editor");
  if (editor) {
    var lo = parseFloat(editor.dataset.start), hi = parseFloat(editor.dataset.end);
    var maxLen = parseFloat(editor.dataset.max);
    var startIn = document.getElementById("clip-start");
    var endIn = document.getElementById("clip-end");
    var startHandle = document.getElementById("clip-start-handle");
    var endHandle = document.getElementById("clip-end-handle");
    [startIn, endIn].forEach(function (i) { i.min = lo.toFixed(2); i.max = hi.toFixed(2); });
    [startHandle, endHandle].forEach(function (h) { h.max = (hi - lo).toFixed(2); });
    startIn.value = Math.max(lo, hi - maxLen).toFixed(2);
    endIn.value = hi.toFixed(2);
    startHandle.value = (parseFloat(startIn.value) - lo).toFixed(2);
    endHandle.value = (hi - lo).toFixed(2);
    rangeEditor({
      start: startIn, end: endIn, video: player, offset: lo,
      setStart: document.getElementById("set-start"), setEnd: document.getElementById("set-end"),
      startHandle: startHandle, endHandle: endHandle,
      lengthEl: document.getElementById("clip-length")
    });
    var form = document.getElementById("clip-form");
    var err = document.getElementById("clip-error");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      err.hidden = true;
      var publish = document.getElementById("clip-publish");
      publish.disabled = true;
      api("PATCH", editor.dataset.api, {
        start: parseFloat(startIn.value),
        end: parseFloat(endIn.value),
        title: document.getElementById("clip-title-input").value,
        publish: true
      }).then(function (clip) { window.location.href = clip.url; }, function (e) {
        publish.disabled = false;
        showError(err, e);
      });
    });
    document.getElementById("clip-discard").addEventListener("click", function () {
      api("DELETE", editor.dataset.api).then(function () { window.history.back(); },
        function (e) { showError(err, e); });
    });
  }

  var vodForm = document.getElementById("clip-vod-form");
  if (vodForm) {
    var vodVideo = document.querySelector("video");
    var vs = document.getElementById("clip-vod-start");
    var ve = document.getElementById("clip-vod-end");
    var duration = parseFloat(vodForm.dataset.duration) || 0;
    [vs, ve].forEach(function (i) { i.max = duration.toFixed(2); });
    rangeEditor({
      start: vs, end: ve, video: vodVideo, offset: 0,
      setStart: document.getElementById("clip-vod-set-start"),
      setEnd: document.getElementById("clip-vod-set-end")
    });
    vodForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var e = document.getElementById("clip-vod-error");
      e.hidden = true;
      api("POST", vodForm.dataset.url, {
        start: parseFloat(vs.value),
        end: parseFloat(ve.value),
        title: document.getElementById("clip-vod-title").value
      }).then(function (clip) { window.location.href = clip.url; }, function (x) { showError(e, x); });
    });
  }
})();
