/* /dashboard/analytics: draws the page's embedded analytics documents with uPlot (vendored
   from npm by `make frontend`). Each chart is a <div data-chart="..."> the template placed;
   a chart whose data is missing is left empty. Markers (title or category changes) are
   vertical lines drawn over the stream's viewer chart. */
(function () {
  "use strict";
  var holder = document.getElementById("analytics-data");
  if (!holder || typeof uPlot === "undefined") return;
  var data = JSON.parse(holder.textContent);
  var css = getComputedStyle(document.documentElement);
  function color(name, fallback) {
    var value = css.getPropertyValue(name).trim();
    return value || fallback;
  }
  var accent = color("--accent", "#8b7bff");
  var live = color("--live", "#e5484d");
  var muted = color("--text-muted", "#a2a6b4");
  var text = color("--text", "#e8e9ee");
  var border = color("--border", "#2a2d38");
  var focus = color("--focus", "#ffd166");
  var charts = [];

  function axes(yLabel) {
    var common = { stroke: muted, grid: { stroke: border, width: 1 }, ticks: { stroke: border } };
    return [Object.assign({}, common), Object.assign({ label: yLabel }, common)];
  }

  function draw(id, title, xs, series, yLabel, extra) {
    var el = document.getElementById(id);
    if (!el || !xs || !xs.length) return null;
    var opts = {
      title: title,
      width: Math.max(280, el.clientWidth || 600),
      height: 240,
      // Counts start at zero, so a flat line near the peak does not look like a swing.
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } } },
      axes: axes(yLabel),
      series: [{}].concat(series.map(function (s) {
        return { label: s.label, stroke: s.stroke, width: 2, fill: s.fill, points: { show: false } };
      })),
      legend: { live: true },
    };
    if (extra) Object.assign(opts, extra);
    var plot = new uPlot(opts, [xs].concat(series.map(function (s) { return s.values; })), el);
    el.dataset.drawn = "true";
    charts.push({ el: el, plot: plot });
    return plot;
  }

  var channel = data.channel;
  if (channel) {
    var s = channel.series;
    var unit = channel.bucket_seconds === 3600 ? "hour" : "day";
    draw("chart-channel-viewers", "Viewers per " + unit, s.t, [
      { label: "Average", stroke: accent, fill: accent + "33", values: s.average_viewers },
      { label: "Peak", stroke: live, values: s.peak_viewers },
    ], "viewers");
    draw("chart-channel-activity", "Watch hours, chat and follows per " + unit, s.t, [
      { label: "Watch hours", stroke: accent, values: s.watch_hours },
      { label: "Chat messages", stroke: muted, values: s.chat_messages },
      { label: "Follows", stroke: focus, values: s.follows },
    ], "count");
  }

  var stream = data.stream;
  if (stream && stream.series.offset.length) {
    var start = stream.stream.started_at ? Date.parse(stream.stream.started_at) / 1000 : 0;
    var xs = stream.series.offset.map(function (o) { return start + o; });
    var markers = stream.markers.map(function (m) { return start + m.offset_seconds; });
    var markerHook = {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = focus;
          ctx.fillStyle = text;
          ctx.lineWidth = 1;
          ctx.setLineDash([4, 4]);
          ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
          markers.forEach(function (t, i) {
            var x = Math.round(u.valToPos(t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText(stream.markers[i].title.slice(0, 24), x + 4, u.bbox.top + 12 * devicePixelRatio);
          });
          ctx.restore();
        }],
      },
    };
    draw("chart-stream-viewers", "Viewers", xs, [
      { label: "Average", stroke: accent, fill: accent + "33", values: stream.series.average_viewers },
      { label: "Peak", stroke: live, values: stream.series.peak_viewers },
    ], "viewers", markerHook);
    draw("chart-stream-chat", "Chat and follows", xs, [
      { label: "Chat messages", stroke: muted, values: stream.series.chat_messages },
      { label: "Follows", stroke: focus, values: stream.series.follows },
    ], "count");
  }

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      charts.forEach(function (c) {
        c.plot.setSize({ width: Math.max(280, c.el.clientWidth || 600), height: 240 });
      });
    }, 150);
  });
})();
