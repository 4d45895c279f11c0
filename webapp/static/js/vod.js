// Recording page: plays /vod/{id}/master.m3u8 with hls.js (Safari natively).
(function () {
  "use strict";
  var root = document.getElementById("vod");
  if (!root) return;
  var video = document.getElementById("vod-video");
  var errorBox = document.getElementById("vod-error");
  var src = root.dataset.src;

  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  if (window.Hls && window.Hls.isSupported()) {
    var hls = new window.Hls();
    hls.on(window.Hls.Events.ERROR, function (_event, data) {
      if (!data.fatal) return;
      if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        fail("The recording could not be loaded.");
      }
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    window.aethexVod = { hls: hls, video: video };
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
  } else {
    fail("This browser cannot play HLS video.");
  }
})();
