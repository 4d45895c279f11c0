// The video library dashboard (/dashboard/videos): every change goes through the JSON API
// (/api/videos/{id}, /api/channels/{slug}/video-settings) with the page's CSRF token.
// Text from the server goes in with textContent only. Delete asks for a second click.
(function () {
  "use strict";

  var root = document.getElementById("videos-dashboard");
  if (!root) return;

  var CONFIRM_MS = 4000;
  var announcer = document.getElementById("videos-announcer");

  var api = window.aethexApi.request;
  var errorText = window.aethexApi.errorText;

  function announce(text) { if (announcer) announcer.textContent = text; }

  function show(box, el, text) {
    var err = box.querySelector("[data-error]");
    var ok = box.querySelector("[data-ok]");
    if (err) err.hidden = true;
    if (ok) ok.hidden = true;
    if (el) {
      if (text !== undefined) el.textContent = text;
      el.hidden = false;
    }
  }

  function sizeText(size) {
    var units = [["GB", 1073741824], ["MB", 1048576], ["KB", 1024]];
    for (var i = 0; i < units.length; i++) {
      if (size >= units[i][1]) return (size / units[i][1]).toFixed(1) + " " + units[i][0];
    }
    return size + " B";
  }

  function refreshStorage(section) {
    var slug = section.dataset.channel;
    api("GET", "/api/channels/" + encodeURIComponent(slug) + "/videos?limit=1").then(function (res) {
      var out = section.querySelector("[data-storage]");
      if (res.ok && out) out.textContent = sizeText(res.data.storage_bytes);
    });
  }

  // -- per-channel settings ----------------------------------------------------------------

  function numberOrNull(input, whole) {
    var raw = input.value.trim();
    if (raw === "") return null;
    var n = Number(raw);
    return whole ? Math.trunc(n) : n;
  }

  root.querySelectorAll("[data-settings-form]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = {
        retention_days: numberOrNull(form.elements.retention_days, true),
        retention_max_gb: numberOrNull(form.elements.retention_max_gb, false),
        allow_downloads: form.elements.allow_downloads.checked,
        allow_vod_clips: form.elements.allow_vod_clips.checked
      };
      var url = "/api/channels/" + encodeURIComponent(form.dataset.channel) + "/video-settings";
      api("PATCH", url, body).then(function (res) {
        if (!res.ok) return show(form, form.querySelector("[data-error]"), errorText(res));
        show(form, form.querySelector("[data-ok]"));
        announce("Video settings saved.");
      });
    });
  });

  // -- one video ---------------------------------------------------------------------------

  function videoUrl(row) { return "/api/videos/" + encodeURIComponent(row.dataset.videoId); }

  function markDeleted(row, video) {
    row.classList.add("is-deleted");
    var info = row.querySelector(".video-info");
    info.textContent = "";
    var title = document.createElement("p");
    title.className = "video-title-text";
    title.textContent = video.title;
    var metaLine = document.createElement("p");
    metaLine.className = "video-meta";
    var badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "deleted";
    metaLine.appendChild(badge);
    info.appendChild(title);
    info.appendChild(metaLine);
    var img = row.querySelector(".video-thumb img");
    if (img) img.remove();
  }

  root.querySelectorAll(".video-row").forEach(function (row) {
    var form = row.querySelector("[data-video-form]");
    if (!form) return;
    var section = row.closest(".video-channel");

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = {
        title: form.elements.title.value,
        description: form.elements.description.value,
        visibility: form.elements.visibility.value
      };
      api("PATCH", videoUrl(row), body).then(function (res) {
        if (!res.ok) return show(form, form.querySelector("[data-error]"), errorText(res));
        form.elements.title.value = res.data.title;
        form.elements.description.value = res.data.description;
        form.elements.visibility.value = res.data.visibility;
        show(form, form.querySelector("[data-ok]"));
        announce("Saved “" + res.data.title + "”.");
      });
    });

    var pin = form.querySelector("[data-pin]");
    pin.addEventListener("click", function () {
      var pinned = row.dataset.pinned === "true";
      api("PATCH", videoUrl(row), { pinned: !pinned }).then(function (res) {
        if (!res.ok) return show(form, form.querySelector("[data-error]"), errorText(res));
        row.dataset.pinned = res.data.pinned ? "true" : "false";
        pin.setAttribute("aria-pressed", res.data.pinned ? "true" : "false");
        pin.textContent = res.data.pinned ? "Unpin" : "Pin";
        show(form, null);
        announce(res.data.pinned ? "Pinned." : "Unpinned.");
      });
    });

    var del = form.querySelector("[data-delete]");
    var armed = null;
    del.addEventListener("click", function () {
      if (!armed) {
        del.textContent = "Click again to delete";
        armed = setTimeout(function () { armed = null; del.textContent = "Delete"; }, CONFIRM_MS);
        return;
      }
      clearTimeout(armed);
      armed = null;
      del.disabled = true;
      api("DELETE", videoUrl(row)).then(function (res) {
        del.disabled = false;
        del.textContent = "Delete";
        if (!res.ok) return show(form, form.querySelector("[data-error]"), errorText(res));
        markDeleted(row, res.data);
        announce("Deleted “" + res.data.title + "”.");
        if (section) refreshStorage(section);
      });
    });
  });
})();
