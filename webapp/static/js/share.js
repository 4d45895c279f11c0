// Share button (channel page, profile page): the browser's share sheet where there is one,
// else copy the page's canonical link to the clipboard; where the clipboard is refused too,
// show the link in a read-only field, selected, to copy by hand. Every outcome is said in
// the #share-status live region.
(function () {
  "use strict";

  var button = document.getElementById("share-button");
  if (!button) return;
  var status = document.getElementById("share-status");
  var fallback = document.getElementById("share-fallback");
  var field = document.getElementById("share-link");
  var url = button.dataset.url;
  var title = button.dataset.title || document.title;
  var clearTimer = null;

  function say(text) {
    // Emptied first so saying the same thing twice is announced twice.
    status.textContent = "";
    clearTimeout(clearTimer);
    window.setTimeout(function () { status.textContent = text; }, 50);
    clearTimer = window.setTimeout(function () { status.textContent = ""; }, 5000);
  }

  function showField() {
    fallback.hidden = false;
    field.value = url;
    field.focus();
    field.select();
    field.setSelectionRange(0, url.length);
  }

  function copyByHand() {
    showField();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (e) {
      copied = false;
    }
    say(copied ? "Link copied" : "Copy the selected link");
  }

  function copy() {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url).then(function () {
        fallback.hidden = true;
        say("Link copied");
      }, copyByHand);
    } else {
      copyByHand();
    }
  }

  button.addEventListener("click", function () {
    if (typeof navigator.share === "function") {
      navigator.share({ title: title, url: url }).then(function () {
        say("Link shared");
      }, function (err) {
        // The person closed the sheet: nothing to do. Anything else: copy instead.
        if (!err || err.name !== "AbortError") copy();
      });
      return;
    }
    copy();
  });

  field.addEventListener("focus", function () { field.select(); });
})();
