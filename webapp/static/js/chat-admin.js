// Chat moderation pages: every action goes through the JSON API with the CSRF header.
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var statusEl = document.getElementById("chat-admin-status");

  function say(text) { if (statusEl) statusEl.textContent = text; }

  function call(method, url, body) {
    var opts = {method: method, credentials: "same-origin",
                headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
        return data;
      });
    });
  }
  function fail(err) { say("Error: " + err.message); }

  var admin = document.getElementById("chat-admin");
  if (admin) {
    var slug = admin.dataset.slug;
    var base = "/api/channels/" + encodeURIComponent(slug);
    var form = document.getElementById("chat-settings-form");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      call("PATCH", base + "/chat/settings", {
        slow_mode_seconds: parseInt(form.elements.slow_mode_seconds.value || "0", 10),
        followers_only: form.elements.followers_only.checked,
        logged_in_only: form.elements.logged_in_only.checked,
        word_filter: form.elements.word_filter.value.split("\n"),
        filter_mode: form.elements.filter_mode.value
      }).then(function () { say("Saved."); }, fail);
    });
    var addMod = document.getElementById("add-mod-form");
    if (addMod) {
      addMod.addEventListener("submit", function (ev) {
        ev.preventDefault();
        call("POST", base + "/moderators", {username: addMod.elements.username.value})
          .then(function () { location.reload(); }, fail);
      });
    }
    admin.addEventListener("click", function (ev) {
      var t = ev.target;
      if (t.dataset.removeMod) {
        call("DELETE", base + "/moderators/" + t.dataset.removeMod)
          .then(function () { location.reload(); }, fail);
      } else if (t.dataset.unban) {
        call("DELETE", base + "/bans/" + t.dataset.unban)
          .then(function () { location.reload(); }, fail);
      }
    });
  }

  var reports = document.getElementById("reports-page");
  if (reports) {
    reports.addEventListener("click", function (ev) {
      var t = ev.target;
      if (t.dataset.resolve) {
        call("POST", "/api/reports/" + t.dataset.resolve + "/resolve", {status: t.dataset.status})
          .then(function () {
            var row = t.closest("tr");
            row.querySelector(".report-status").textContent = t.dataset.status;
            say("Report " + t.dataset.status + ".");
          }, fail);
      } else if (t.dataset.deleteMessage) {
        call("DELETE", "/api/messages/" + t.dataset.deleteMessage)
          .then(function () { t.remove(); say("Message deleted."); }, fail);
      }
    });
  }
})();
