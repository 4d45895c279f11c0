// The header's bell: its unread count, kept current by the server's event stream
// (GET /notifications/events, Server-Sent Events: "event: unread", data {"unread": N}).
// The browser's EventSource reconnects by itself when the stream drops. Loaded only for
// logged-in pages; no inline scripts (CSP).
"use strict";
(function () {
  var bell = document.getElementById("nav-bell");
  var countEl = document.getElementById("bell-count");
  if (!bell || !countEl || typeof EventSource === "undefined") return;

  function show(n) {
    countEl.textContent = n > 99 ? "99+" : String(n);
    countEl.hidden = n <= 0;
    bell.dataset.unread = String(n);
    bell.setAttribute("aria-label", n > 0 ? "Notifications, " + n + " unread" : "Notifications");
  }

  var source = new EventSource(bell.dataset.events, { withCredentials: true });
  source.addEventListener("unread", function (event) {
    try {
      var data = JSON.parse(event.data);
      if (typeof data.unread === "number") show(data.unread);
    } catch (e) { /* a malformed event changes nothing */ }
  });
  // Let other scripts of the page (the list's mark-read buttons) update the bell at once.
  document.addEventListener("aethex:unread", function (event) {
    if (event.detail && typeof event.detail.unread === "number") show(event.detail.unread);
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
