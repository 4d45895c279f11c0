// The Community link of a channel's page: a dot when topics have messages the logged-in
// viewer has not read (the topic list's counts on load, then community:message events from
// the chat room through window.aethexChat, which chat.js sets up before this runs).
(function () {
  "use strict";

  var link = document.getElementById("community-link");
  var dot = document.getElementById("community-link-dot");
  var chat = window.aethexChat;
  if (!link || !dot || !chat || !document.querySelector(".nav-user")) return;

  function show() { dot.hidden = false; link.setAttribute("data-unread", "true"); }

  fetch("/api/channels/" + encodeURIComponent(chat.slug) + "/community/topics",
        { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (data) {
      if (data && data.topics.some(function (t) { return t.unread; })) show();
    }, function () {});

  chat.on("community:message", function (e) {
    var me = chat.me();
    if (!me || e.user.id !== me.id) show();
  });
})();
