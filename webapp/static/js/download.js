// Download form on the video page: list the video's renditions (from its master playlist,
// highest first) in the quality choice. Without this script the form still downloads the
// best rendition ("rendition=" empty).
(function () {
  "use strict";

  var form = document.getElementById("download-form");
  if (!form || !window.fetch) return;
  var select = document.getElementById("download-rendition");

  function renditions(text) {
    var found = [];
    var info = null;
    text.split(/\r?\n/).forEach(function (line) {
      line = line.trim();
      if (line.indexOf("#EXT-X-STREAM-INF:") === 0) {
        var size = /RESOLUTION=(\d+)x(\d+)/.exec(line);
        info = size ? size[1] + "\u00d7" + size[2] : "";
      } else if (line && line.charAt(0) !== "#" && info !== null) {
        var name = line.split("/")[0];
        if (/^[A-Za-z0-9_-]{1,64}$/.test(name)) found.push({ name: name, size: info });
        info = null;
      }
    });
    return found;
  }

  fetch(form.dataset.master, { credentials: "same-origin" })
    .then(function (response) { return response.ok ? response.text() : ""; })
    .then(function (text) {
      renditions(text).forEach(function (r) {
        var option = document.createElement("option");
        option.value = r.name;
        option.textContent = r.size ? r.name + " (" + r.size + ")" : r.name;
        select.appendChild(option);
      });
    })
    .catch(function () { /* the best-quality choice is still there */ });
})();
