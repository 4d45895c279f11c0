// The timeline bar under a past broadcast's player (webapp.replay): progress, chapter markers,
// and a scrubbing preview while the pointer hovers or drags (the native <video> controls
// cannot show one). Chapters come from GET /api/videos/{id}/chapters and are listed under
// the bar (a click seeks); previews from /videos/{id}/previews/previews.vtt, whose cues name
// a tile of a sprite (#xywh=x,y,w,h). All text goes in with textContent.
(function () {
  "use strict";
  var root = document.getElementById("video-chapters");
  var video = document.getElementById("vod-video");
  if (!root || !video) return;
  var ref = encodeURIComponent(root.dataset.video);
  var bar = document.getElementById("timeline");
  var progress = document.getElementById("timeline-progress");
  var markers = document.getElementById("timeline-markers");
  var preview = document.getElementById("timeline-preview");
  var thumb = document.getElementById("timeline-thumb");
  var timeLabel = document.getElementById("timeline-time");
  var chapterLabel = document.getElementById("timeline-chapter");
  var listEl = document.getElementById("chapter-list");
  var heading = document.getElementById("chapters-heading");
  // The bar belongs right under the picture, wherever the page put the chapters.
  var stage = video.parentElement;
  if (stage && stage !== root && !stage.contains(root) && stage.nextElementSibling !== bar) {
    stage.insertAdjacentElement("afterend", bar);
  }
  var known = parseFloat(root.dataset.duration) || 0;
  var chapters = [];
  var cues = [];
  var hovering = false;
  var dragging = false;

  function total() {
    return isFinite(video.duration) && video.duration > 0 ? video.duration : known;
  }

  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var rest = String(s % 60).padStart(2, "0");
    return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  }

  function chapterAt(t) {
    var found = null;
    chapters.forEach(function (c) { if (c.offset <= t) found = c; });
    return found;
  }

  function cueAt(t) {
    var lo = 0;
    var hi = cues.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (t < cues[mid].start) hi = mid - 1;
      else if (t >= cues[mid].end) lo = mid + 1;
      else return cues[mid];
    }
    return cues.length && t >= cues[cues.length - 1].start ? cues[cues.length - 1] : null;
  }

  function ratioAt(event) {
    var rect = bar.getBoundingClientRect();
    return rect.width > 0 ? Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)) : 0;
  }

  function seek(t) {
    var length = total();
    if (!(length > 0)) return;
    video.currentTime = Math.min(Math.max(0, t), Math.max(0, length - 0.05));
    draw(video.currentTime);
  }

  function draw(t) {
    var length = total();
    var ratio = length > 0 ? Math.min(1, t / length) : 0;
    progress.style.width = (ratio * 100).toFixed(3) + "%";
    bar.setAttribute("aria-valuenow", String(Math.floor(t)));
    bar.setAttribute("aria-valuetext", clock(t));
    var current = chapterAt(t);
    Array.prototype.forEach.call(listEl.querySelectorAll("button"), function (b) {
      if (current && b.dataset.offset === String(current.offset)) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    });
  }

  function showPreview(ratio) {
    var length = total();
    if (!(length > 0)) return;
    var t = ratio * length;
    preview.hidden = false;
    timeLabel.textContent = clock(t);
    var chapter = chapterAt(t);
    chapterLabel.textContent = chapter && chapters.length > 1 ? chapter.title : "";
    var cue = cueAt(t);
    if (cue) {
      thumb.hidden = false;
      thumb.style.width = cue.w + "px";
      thumb.style.height = cue.h + "px";
      thumb.style.backgroundImage = 'url("' + cue.url.replace(/["\\]/g, "") + '")';
      thumb.style.backgroundPosition = -cue.x + "px " + -cue.y + "px";
      thumb.dataset.sprite = cue.url;
      thumb.dataset.start = String(cue.start);
    } else {
      thumb.hidden = true;
    }
    var width = bar.clientWidth;
    var half = preview.offsetWidth / 2;
    var x = Math.min(Math.max(ratio * width, half), Math.max(half, width - half));
    preview.style.left = x + "px";
    root.dataset.previewAt = t.toFixed(3);
  }

  function hidePreview() {
    if (dragging || hovering) return;
    preview.hidden = true;
  }

  bar.addEventListener("pointerenter", function () { hovering = true; });
  bar.addEventListener("pointermove", function (e) {
    hovering = true;
    var ratio = ratioAt(e);
    showPreview(ratio);
    if (dragging) draw(ratio * total());
  });
  bar.addEventListener("pointerleave", function () { hovering = false; hidePreview(); });
  bar.addEventListener("pointerdown", function (e) {
    dragging = true;
    if (bar.setPointerCapture) bar.setPointerCapture(e.pointerId);
    showPreview(ratioAt(e));
    draw(ratioAt(e) * total());
  });
  bar.addEventListener("pointerup", function (e) {
    if (!dragging) return;
    dragging = false;
    seek(ratioAt(e) * total());
    hidePreview();
  });
  bar.addEventListener("pointercancel", function () { dragging = false; hidePreview(); });
  bar.addEventListener("keydown", function (e) {
    var step = { ArrowLeft: -5, ArrowRight: 5, PageDown: -60, PageUp: 60 }[e.key];
    if (step !== undefined) seek((video.currentTime || 0) + step);
    else if (e.key === "Home") seek(0);
    else if (e.key === "End") seek(total());
    else return;
    e.preventDefault();
  });
  video.addEventListener("timeupdate", function () { if (!dragging) draw(video.currentTime || 0); });
  video.addEventListener("durationchange", function () { drawMarkers(); draw(video.currentTime || 0); });

  function drawMarkers() {
    var length = total();
    markers.textContent = "";
    if (!(length > 0)) return;
    chapters.forEach(function (c) {
      if (c.offset <= 0 || c.offset >= length) return;
      var mark = document.createElement("span");
      mark.className = "timeline-marker";
      mark.style.left = ((c.offset / length) * 100).toFixed(3) + "%";
      mark.title = c.title;
      mark.dataset.offset = String(c.offset);
      markers.appendChild(mark);
    });
  }

  function listChapters() {
    listEl.textContent = "";
    heading.hidden = chapters.length < 2;
    if (chapters.length < 2) return;  // one chapter is just the video
    chapters.forEach(function (c) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "chapter-link";
      button.dataset.offset = String(c.offset);
      var time = document.createElement("span");
      time.className = "chapter-time";
      time.textContent = clock(c.offset);
      var title = document.createElement("span");
      title.className = "chapter-title";
      title.textContent = c.title;
      button.append(time, title);
      if (c.category) {
        var category = document.createElement("span");
        category.className = "chapter-category";
        category.textContent = c.category.name;
        button.append(category);
      }
      button.addEventListener("click", function () { seek(c.offset); });
      li.appendChild(button);
      listEl.appendChild(li);
    });
  }

  function seconds(stamp) {
    var parts = stamp.split(":").map(parseFloat);
    return parts.reduce(function (acc, v) { return acc * 60 + v; }, 0);
  }

  function parseVtt(text, base) {
    var out = [];
    var lines = text.split(/\r?\n/);
    for (var i = 0; i < lines.length; i++) {
      var m = /^(\d+:\d\d:\d\d\.\d+|\d\d:\d\d\.\d+) --> (\d+:\d\d:\d\d\.\d+|\d\d:\d\d\.\d+)/.exec(lines[i]);
      if (!m || i + 1 >= lines.length) continue;
      var target = /^(.+)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(lines[i + 1].trim());
      if (!target) continue;
      out.push({
        start: seconds(m[1]),
        end: seconds(m[2]),
        url: new URL(target[1], base).href,
        x: +target[2], y: +target[3], w: +target[4], h: +target[5]
      });
    }
    return out.sort(function (a, b) { return a.start - b.start; });
  }

  fetch("/api/videos/" + ref + "/chapters", { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (body) {
      if (!body) return;
      if (!known && body.duration) known = body.duration;
      chapters = body.chapters;
      listChapters();
      drawMarkers();
      draw(video.currentTime || 0);
      root.dataset.chapters = String(chapters.length);
    })
    .catch(function () { /* no chapters: the bar still seeks */ });

  var vttUrl = new URL("/videos/" + ref + "/previews/previews.vtt", window.location.href).href;
  fetch(vttUrl, { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.text() : ""; })
    .then(function (text) {
      cues = text ? parseVtt(text, vttUrl) : [];
      root.dataset.previews = String(cues.length);
    })
    .catch(function () { root.dataset.previews = "0"; });
})();
