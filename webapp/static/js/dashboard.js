// Creator dashboard: live status, viewers, uptime and stream health polled from /api/dashboard
// about every second; every change (avatar and banner uploads included, as multipart) goes
// through the JSON API with the page's CSRF token.
// Text from the server goes in with textContent only. Dangerous buttons (regenerate, end,
// delete) ask for a second click instead of a dialog.
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root) return;

  var POLL_MS = Math.max(250, Number(root.dataset.pollMs) || 1000);
  var CONFIRM_MS = 4000;
  var statusUrl = root.dataset.statusUrl;
  var maxUploadBytes = Number(root.dataset.maxUploadBytes) || 0;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var announcer = document.getElementById("dash-announcer");
  var numberFormat = new Intl.NumberFormat();
  var pollTimer = null;
  var lastPoll = null;

  window.aethexDashboard = { get lastPoll() { return lastPoll; } };

  // -- API ---------------------------------------------------------------------------------

  function api(method, url, body) {
    var init = { method: method, headers: { Accept: "application/json" }, cache: "no-store",
                 credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body instanceof FormData) {
      init.body = body;  // the browser writes the multipart Content-Type with its boundary
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (r) {
      if (r.status === 204) return { ok: true, status: 204, data: null };
      return r.json().catch(function () { return null; }).then(function (data) {
        return { ok: r.ok, status: r.status, data: data };
      });
    });
  }

  function errorText(res) {
    if (res.data && res.data.error && res.data.error.message) return res.data.error.message;
    return "The server answered " + res.status + ".";
  }

  function announce(text) { if (announcer) announcer.textContent = text; }

  // -- forms -------------------------------------------------------------------------------

  function formBody(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name) return;
      var kind = el.dataset.kind;
      if (kind === "bool") {
        body[el.name] = el.checked;
      } else if (kind === "tags") {
        body[el.name] = el.value.split(",").map(function (t) { return t.trim(); })
          .filter(function (t) { return t.length > 0; });
      } else if (el.name === "category" || el.name === "language") {
        body[el.name] = el.value.trim() || null;
      } else {
        body[el.name] = el.value;
      }
    });
    return body;
  }

  function setMessage(form, role, text) {
    var el = form.querySelector('[data-role="' + role + '"]');
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }

  function onSubmit(event) {
    var form = event.target;
    if (form.matches && form.matches("form[data-image-kind]")) {
      event.preventDefault();
      uploadImage(form);
      return;
    }
    if (!form.matches || !form.matches("form[data-api-url]")) return;
    event.preventDefault();
    var section = form.closest(".dash-channel");
    var url = form.dataset.apiUrl;
    if (url.indexOf("{id}") >= 0) {
      if (!section || !section.dataset.streamId) return;
      url = url.replace("{id}", encodeURIComponent(section.dataset.streamId));
    }
    setMessage(form, "error", "");
    setMessage(form, "ok", "");
    var button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    api(form.dataset.apiMethod, url, formBody(form)).then(function (res) {
      if (!res.ok) {
        setMessage(form, "error", errorText(res));
        return;
      }
      if (form.dataset.then === "reload") {
        window.location.reload();
        return;
      }
      setMessage(form, "ok", "Saved.");
    }).catch(function () {
      setMessage(form, "error", "Could not reach the server.");
    }).then(function () {
      if (button) button.disabled = false;
    });
  }

  // -- buttons -----------------------------------------------------------------------------

  function confirmed(button, prompt) {
    if (button.dataset.armed === "1") {
      delete button.dataset.armed;
      button.textContent = button.dataset.label;
      return true;
    }
    button.dataset.label = button.textContent;
    button.dataset.armed = "1";
    button.textContent = prompt;
    setTimeout(function () {
      if (button.dataset.armed === "1") {
        delete button.dataset.armed;
        button.textContent = button.dataset.label;
      }
    }, CONFIRM_MS);
    return false;
  }

  function flash(button, text) {
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  function copyText(text, button, fallbackInput) {
    function done() { flash(button, "Copied"); announce("Copied to the clipboard"); }
    function legacy() {
      // Older browsers, or a page not allowed the async clipboard: copy from a selection.
      var input = fallbackInput;
      var temp = null;
      if (!input) {
        temp = document.createElement("textarea");
        temp.value = text;
        temp.setAttribute("readonly", "");
        temp.className = "visually-hidden";
        document.body.appendChild(temp);
        input = temp;
      }
      var type = input.type;
      if (input.tagName === "INPUT") input.type = "text";
      input.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      if (input.tagName === "INPUT") input.type = type;
      if (temp) temp.remove();
      if (ok) done(); else flash(button, "Select and copy");
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, legacy);
    } else {
      legacy();
    }
  }

  function onClick(event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var section = button.closest(".dash-channel");
    if (!section) return;
    var slug = section.dataset.slug;
    var keyInput = section.querySelector('[data-field="key"]');
    var note = section.querySelector('[data-role="key-note"]');
    switch (button.dataset.action) {
      case "toggle-key":
        var show = keyInput.type === "password";
        keyInput.type = show ? "text" : "password";
        button.textContent = show ? "Hide" : "Show";
        button.setAttribute("aria-pressed", show ? "true" : "false");
        break;
      case "copy-key":
        copyText(keyInput.value, button, keyInput);
        break;
      case "copy-server":
        copyText(section.querySelector('[data-field="server"]').textContent.trim(), button);
        break;
      case "copy-rtmps-server":
        copyText(section.querySelector('[data-field="rtmps-server"]').textContent.trim(), button);
        break;
      case "regenerate":
        if (!confirmed(button, "Click again: old key stops working")) return;
        api("POST", "/api/channels/" + encodeURIComponent(slug) + "/stream-key").then(function (res) {
          if (!res.ok) { note.textContent = errorText(res); return; }
          keyInput.value = res.data.stream_key;
          note.textContent = "New key made: update it in OBS. The old key no longer works.";
        });
        break;
      case "end":
        if (!confirmed(button, "Click again to end the stream")) return;
        var id = section.dataset.streamId;
        if (!id) return;
        button.disabled = true;
        api("POST", "/api/streams/" + encodeURIComponent(id) + "/end").then(function (res) {
          button.disabled = false;
          if (!res.ok && res.status !== 409) { announce(errorText(res)); return; }
          announce("Stream ended");
          poll();
        });
        break;
      case "remove-image":
        if (!confirmed(button, "Click again to remove")) return;
        var imageForm = button.closest("form[data-image-kind]");
        sendImage(imageForm, "DELETE", undefined,
          (imageForm.dataset.imageKind === "avatar" ? "Avatar" : "Banner") + " removed.");
        break;
      case "delete":
        if (!confirmed(button, "Click again to delete the channel")) return;
        api("DELETE", "/api/channels/" + encodeURIComponent(slug)).then(function (res) {
          if (!res.ok) { announce(errorText(res)); flash(button, errorText(res)); return; }
          section.remove();
          announce("Channel deleted");
        });
        break;
    }
  }

  // -- avatar and banner -------------------------------------------------------------------

  function megabytes(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  function imageUrl(section, form) {
    return "/api/channels/" + encodeURIComponent(section.dataset.slug) + "/" +
      encodeURIComponent(form.dataset.imageKind);
  }

  function showImage(form, url) {
    var img = form.querySelector('[data-role="image"]');
    if (url) img.src = url; else img.removeAttribute("src");
    img.hidden = !url;
    form.querySelector('[data-role="no-image"]').hidden = Boolean(url);
    form.querySelector('[data-action="remove-image"]').hidden = !url;
    form.dataset.hasImage = url ? "true" : "false";
  }

  function sendImage(form, method, body, doneText) {
    var section = form.closest(".dash-channel");
    var buttons = form.querySelectorAll("button");
    setMessage(form, "error", "");
    setMessage(form, "ok", "");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    api(method, imageUrl(section, form), body).then(function (res) {
      if (!res.ok) {
        setMessage(form, "error", errorText(res));
        return;
      }
      showImage(form, res.data.channel[form.dataset.imageKind + "_url"]);
      form.querySelector('input[type="file"]').value = "";
      setMessage(form, "ok", doneText);
    }).catch(function () {
      setMessage(form, "error", "Could not reach the server.");
    }).then(function () {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
    });
  }

  function uploadImage(form) {
    var input = form.querySelector('input[type="file"]');
    var file = input.files && input.files[0];
    setMessage(form, "ok", "");
    if (!file) {
      setMessage(form, "error", "Choose an image file first.");
      return;
    }
    if (maxUploadBytes && file.size > maxUploadBytes) {
      setMessage(form, "error", "The file is " + megabytes(file.size) + "; the limit is " +
        megabytes(maxUploadBytes) + ".");
      return;
    }
    var body = new FormData();
    body.append("file", file);
    var kind = form.dataset.imageKind;
    sendImage(form, "POST", body, (kind === "avatar" ? "Avatar" : "Banner") + " updated.");
  }

  // -- live status -------------------------------------------------------------------------

  function field(section, name) { return section.querySelector('[data-field="' + name + '"]'); }

  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  function clock(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return h + ":" + (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  function kbps(value) {
    if (!value) return "–";
    return value >= 1000 ? (value / 1000).toFixed(2) + " Mbit/s" : Math.round(value) + " kbit/s";
  }

  function renderHealth(section, health) {
    var ing = health ? health.ingest : null;
    setText(field(section, "bitrate"), ing ? kbps(ing.bitrate_kbps) : "–");
    setText(field(section, "fps"), ing && ing.frame_rate ? ing.frame_rate.toFixed(1) + " fps" : "–");
    setText(field(section, "keyframe"), ing && ing.keyframe_interval_s ? ing.keyframe_interval_s.toFixed(2) + " s" : "–");
    var source = "–";
    if (ing && ing.video_codec) {
      source = (ing.width && ing.height ? ing.width + "×" + ing.height + " " : "") + ing.video_codec +
        (ing.audio_codec ? " + " + ing.audio_codec + (ing.audio_sample_rate ? " " + ing.audio_sample_rate / 1000 + " kHz" : "") : "");
    }
    setText(field(section, "source"), source);

    var tbody = field(section, "rungs");
    var rungs = health && health.transcode ? health.transcode.renditions : [];
    var rows = document.createDocumentFragment();
    if (!rungs.length) {
      var empty = document.createElement("tr");
      var td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = health && health.transcode ? "Waiting for the first frames…" : "Transcoding is off: viewers get no ladder.";
      empty.appendChild(td);
      rows.appendChild(empty);
    }
    rungs.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.rendition = r.name;
      [r.name + (r.passthrough ? " (copy)" : ""),
       r.width && r.height ? r.width + "×" + r.height : "–",
       r.passthrough ? "copy" : r.speed.toFixed(2) + "×",
       r.fps.toFixed(1),
       numberFormat.format(r.dropped_frames)].forEach(function (text) {
        var cell = document.createElement("td");
        cell.textContent = text;
        tr.appendChild(cell);
      });
      if (r.dropped_frames) tr.className = "dash-bad";
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);

    var list = field(section, "warnings");
    var warnings = health ? health.warnings : [];
    var items = document.createDocumentFragment();
    warnings.forEach(function (w) {
      var li = document.createElement("li");
      li.dataset.code = w.code;
      li.textContent = w.message;
      items.appendChild(li);
    });
    var before = Array.prototype.map.call(list.children, function (li) { return li.textContent; }).join("\n");
    var after = warnings.map(function (w) { return w.message; }).join("\n");
    if (before !== after) list.replaceChildren(items);
  }

  function renderPast(section, streams) {
    var tbody = field(section, "past");
    var rows = document.createDocumentFragment();
    if (!streams.length) {
      var none = document.createElement("tr");
      none.className = "dash-none";
      var td = document.createElement("td");
      td.colSpan = 6;
      td.textContent = "No past streams yet.";
      none.appendChild(td);
      rows.appendChild(none);
    }
    streams.forEach(function (s) {
      var tr = document.createElement("tr");
      tr.dataset.streamId = s.id;
      var started = (s.started_at || "").slice(0, 16).replace("T", " ");
      [started, s.title, clock(s.duration_seconds), String(s.peak_viewers), s.status].forEach(function (text) {
        var cell = document.createElement("td");
        cell.textContent = text;
        tr.appendChild(cell);
      });
      var rec = document.createElement("td");
      if (s.vod_available) {
        var watch = document.createElement("a");
        watch.href = s.watch_url;
        watch.textContent = "Watch";
        var hls = document.createElement("a");
        hls.href = s.vod_url;
        hls.textContent = "HLS";
        rec.append(watch, " · ", hls);
      } else {
        rec.textContent = "–";
      }
      tr.appendChild(rec);
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    return streams.some(function (s) { return s.status === "live" || s.status === "ending"; });
  }

  function refreshPast(section) {
    var url = "/api/streams?live=false&limit=20&channel=" + encodeURIComponent(section.dataset.slug);
    return api("GET", url).then(function (res) {
      if (!res.ok) return;
      // Until the last stream is archived (its VOD listed), look again on the next polls.
      var pending = renderPast(section, res.data.streams);
      // The stream that just ended may still be closing when the status poll already says
      // offline: look again until it is listed (for a minute of polls at most).
      var waitFor = section.dataset.pastWaitFor;
      if (waitFor) {
        var listed = res.data.streams.some(function (s) { return String(s.id) === waitFor; });
        var tries = Number(section.dataset.pastTries || "0") + 1;
        if (listed || tries > 30) {
          delete section.dataset.pastWaitFor;
          delete section.dataset.pastTries;
        } else {
          section.dataset.pastTries = String(tries);
          pending = true;
        }
      }
      section.dataset.pastPending = pending ? "1" : "";
    });
  }

  function applyChannel(section, ch) {
    var stream = ch.stream;
    var live = Boolean(ch.live && stream);
    var wasLive = section.dataset.live === "true";
    var liveBox = section.querySelector('[data-role="live"]');
    var status = field(section, "status");
    status.dataset.state = live ? "live" : "offline";
    setText(status, live ? "Live" : "Offline");
    liveBox.hidden = !live;
    if (live) {
      var newStream = section.dataset.streamId !== String(stream.id);
      section.dataset.streamId = String(stream.id);
      setText(field(section, "viewers"), numberFormat.format(stream.viewers));
      setText(field(section, "uptime"), clock(stream.uptime_seconds));
      renderHealth(section, stream.health);
      if (newStream || !wasLive) {
        // Fill the edit form once per stream, never while the creator is typing in it.
        field(section, "edit-title").value = stream.title || "";
        field(section, "edit-category").value = stream.category || "";
        field(section, "edit-tags").value = (ch.tags || []).join(", ");
      }
    }
    section.dataset.live = live ? "true" : "false";
    if (wasLive && !live) {
      announce(ch.name + " is offline");
      if (section.dataset.streamId) section.dataset.pastWaitFor = section.dataset.streamId;
      refreshPast(section);
    } else if (!live && section.dataset.pastPending === "1") {
      refreshPast(section);
    } else if (live && !wasLive) {
      announce(ch.name + " is live");
    }
  }

  function poll() {
    clearTimeout(pollTimer);
    api("GET", statusUrl).then(function (res) {
      if (!res.ok || !res.data) return;
      lastPoll = Date.now();
      res.data.channels.forEach(function (ch) {
        var section = document.getElementById("channel-" + ch.slug);
        if (section) applyChannel(section, ch);
      });
    }).catch(function () { /* the server is restarting: try again */ }).then(function () {
      pollTimer = setTimeout(poll, POLL_MS);
    });
  }

  root.addEventListener("submit", onSubmit);
  root.addEventListener("click", onClick);
  poll();
})();
