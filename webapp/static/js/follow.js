// Follow button of the viewer page: POST/DELETE /api/channels/{slug}/follow with the page's
// CSRF token, then show what the server answered (state and exact count). Anonymous viewers
// get a plain link to the login page instead of this button, so nothing here runs for them.
// No inline scripts (CSP).
"use strict";
(function () {
  var button = document.getElementById("follow-button");
  if (!button || button.tagName !== "BUTTON") return;
  var countEl = document.getElementById("follower-count");
  var nounEl = document.getElementById("follower-noun");
  var statusEl = document.getElementById("follow-status");
  var errorEl = document.getElementById("follow-error");
  var pending = false;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var url = button.dataset.url;

  // The bell beside the button: go-live notifications for this follow, on by default.
  var bell = document.getElementById("follow-bell");
  var bellPending = false;

  function showBell(following, notify) {
    if (!bell) return;
    bell.hidden = !following;
    bell.setAttribute("aria-pressed", notify ? "true" : "false");
    bell.title = notify ? "Go-live notifications on (click to turn off)"
                        : "Go-live notifications off (click to turn on)";
  }

  function send(method, target, body) {
    var headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(target, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
        return data;
      });
    });
  }

  if (bell) {
    if (button.getAttribute("aria-pressed") === "true") {
      send("GET", bell.dataset.url).then(function (data) {
        showBell(data.following, data.notify);
      }).catch(function () { /* the bell keeps its default look */ });
    }
    bell.addEventListener("click", function () {
      if (bellPending) return;
      var notify = bell.getAttribute("aria-pressed") !== "true";
      bellPending = true;
      showError("");
      send("PUT", bell.dataset.url, { notify: notify }).then(function (data) {
        showBell(data.following, data.notify);
        announce(data.notify ? "You will be notified when this channel goes live."
                             : "No go-live notifications from this channel.");
      }).catch(function (err) {
        showError("Could not change the notifications: " + err.message);
      }).then(function () { bellPending = false; });
    });
  }

  function show(following, followers) {
    button.setAttribute("aria-pressed", following ? "true" : "false");
    button.textContent = following ? "Following" : "Follow";
    showBell(following, true);  // a new follow starts with its bell on
    if (typeof followers === "number") {
      countEl.textContent = String(followers);
      nounEl.textContent = followers === 1 ? "follower" : "followers";
    }
  }

  function announce(text) { statusEl.textContent = text; }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  // A <button> is reached with Tab and pressed with Enter or Space by the browser itself.
  // While a request is out the button stays enabled (disabling it would drop keyboard focus)
  // and further presses are ignored.
  button.addEventListener("click", function () {
    if (pending) return;
    var following = button.getAttribute("aria-pressed") === "true";
    pending = true;
    button.setAttribute("aria-busy", "true");
    showError("");
    fetch(url, {
      method: following ? "DELETE" : "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" }
    }).then(function (r) {
      if (r.status === 401) {
        window.location.href = "/auth/login?next=" + encodeURIComponent(window.location.pathname);
        return null;
      }
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
        return data;
      });
    }).then(function (data) {
      if (!data) return;
      show(data.following, data.followers);
      announce(data.following ? "You follow this channel." : "You no longer follow this channel.");
    }).catch(function (err) {
      showError("Could not change the follow: " + err.message);
    }).then(function () {
      pending = false;
      button.removeAttribute("aria-busy");
    });
  });
})();
