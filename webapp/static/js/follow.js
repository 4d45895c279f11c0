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

  function show(following, followers) {
    button.setAttribute("aria-pressed", following ? "true" : "false");
    button.textContent = following ? "Following" : "Follow";
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
