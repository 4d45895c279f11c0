// The owner's community page (/dashboard/channels/{slug}/community): add, rename, move and
// delete topics through the JSON API with the page's CSRF token; the page reloads after each
// change so the list is always the server's.
(function () {
  "use strict";

  var root = document.getElementById("community-manage");
  if (!root) return;
  var base = "/api/channels/" + encodeURIComponent(root.getAttribute("data-slug")) +
    "/community/topics";
  var pageError = root.querySelector('[data-role="page-error"]');

  var api = window.aethexApi.request;

  function done(res) {
    if (res.ok) { location.reload(); return; }
    pageError.textContent = window.aethexApi.errorText(res, "The server could not be reached.");
    pageError.hidden = false;
  }

  root.querySelector('[data-role="add-form"]').addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    api("POST", base, { name: f.elements.name.value, kind: f.elements.kind.value }).then(done);
  });

  var items = root.querySelectorAll(".community-manage-item");
  Array.prototype.forEach.call(items, function (item, index) {
    var name = item.getAttribute("data-topic");
    var url = base + "/" + encodeURIComponent(name);
    item.addEventListener("click", function (ev) {
      var act = ev.target.getAttribute && ev.target.getAttribute("data-action");
      if (act === "rename") {
        api("PATCH", url, { name: item.querySelector('[data-role="rename"]').value }).then(done);
      } else if (act === "up" && index > 0) {
        api("PATCH", url, { position: index - 1 }).then(done);
      } else if (act === "down" && index < items.length - 1) {
        api("PATCH", url, { position: index + 1 }).then(done);
      } else if (act === "delete" && confirm("Delete #" + name + " and all its messages?")) {
        api("DELETE", url).then(done);
      }
    });
  });
})();
