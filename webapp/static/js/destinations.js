// The restreaming destinations page (/dashboard/channels/{slug}/destinations): add, enable or
// disable, change the key of and delete destinations through the JSON API with the page's CSRF
// token, and redraw each destination's relay status every second. Server text goes in with
// textContent only.
(function () {
  "use strict";

  var root = document.getElementById("destinations");
  if (!root) return;
  var slug = root.getAttribute("data-slug");
  var base = "/api/channels/" + encodeURIComponent(slug) + "/destinations";
  var list = root.querySelector('[data-role="list"]');
  var empty = root.querySelector('[data-role="empty"]');
  var pageError = root.querySelector('[data-role="page-error"]');
  var form = root.querySelector('[data-role="add-form"]');

  var api = window.aethexApi.request;

  function showError(res) {
    pageError.textContent = window.aethexApi.errorText(res);
    pageError.hidden = false;
  }

  function clearError() { pageError.hidden = true; pageError.textContent = ""; }

  function kbytes(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + " GB";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
    return Math.round(n / 1e3) + " kB";
  }

  function duration(s) {
    s = Math.floor(s || 0);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(sec).padStart(2, "0");
  }

  function detail(st) {
    if (st.state === "live") {
      return "Live for " + duration(st.uptime_seconds) + " · " + (st.bitrate_kbps || 0) +
        " kb/s · " + kbytes(st.bytes_sent) + " sent" +
        (st.dropped_packets ? " · " + st.dropped_packets + " packets dropped" : "");
    }
    if (st.state === "retrying") {
      return "Next attempt in " + Math.ceil(st.next_attempt_in || 0) + " s" +
        (st.last_error ? " · last error: " + st.last_error : "");
    }
    if (st.state === "connecting") return "Connecting…";
    return st.last_error ? "Stopped · " + st.last_error : "Stopped (relays while you are live)";
  }

  function field(li, name) { return li.querySelector('[data-field="' + name + '"]'); }

  function makeItem(d) {
    var li = document.createElement("li");
    li.className = "destination";
    li.setAttribute("data-id", String(d.id));
    li.innerHTML =
      '<div class="destination-head"><strong data-field="name"></strong> ' +
      '<span class="dash-pill" data-field="preset"></span> ' +
      '<span class="restream-state" data-field="state"></span></div>' +
      '<p class="hint"><span data-field="url"></span> · key …<span data-field="key"></span>' +
      ' · sends <span data-field="source"></span></p><p class="hint" data-field="detail"></p>' +
      '<div class="destination-actions"><label class="check"><input type="checkbox" ' +
      'data-action="enabled"> Enabled</label> <input type="password" data-role="new-key" ' +
      'maxlength="512" autocomplete="off" placeholder="New stream key" ' +
      'aria-label="New stream key"> <button class="button" type="button" ' +
      'data-action="key">Save key</button> <button class="button button-danger" ' +
      'type="button" data-action="delete">Delete</button></div>';
    return li;
  }

  function draw(items) {
    var seen = {};
    items.forEach(function (d) {
      var li = list.querySelector('li[data-id="' + d.id + '"]');
      if (!li) { li = makeItem(d); list.appendChild(li); }
      seen[String(d.id)] = true;
      field(li, "name").textContent = d.name;
      field(li, "preset").textContent = d.preset;
      field(li, "url").textContent = d.ingest_url;
      field(li, "key").textContent = d.key_hint;
      field(li, "source").textContent = d.source;
      var state = field(li, "state");
      state.textContent = d.status.state;
      state.setAttribute("data-state", d.status.state);
      field(li, "detail").textContent = detail(d.status);
      var box = li.querySelector('[data-action="enabled"]');
      if (document.activeElement !== box) box.checked = d.enabled;
    });
    Array.prototype.slice.call(list.children).forEach(function (li) {
      if (!seen[li.getAttribute("data-id")]) li.remove();
    });
    empty.hidden = items.length > 0;
  }

  function refresh() {
    return api("GET", base).then(function (res) {
      if (res.ok && res.data) draw(res.data.destinations);
    });
  }

  list.addEventListener("click", function (ev) {
    var target = ev.target;
    var li = target.closest("li[data-id]");
    if (!li) return;
    var url = base + "/" + li.getAttribute("data-id");
    var action = target.getAttribute("data-action");
    if (action === "enabled") {
      api("PATCH", url, { enabled: target.checked }).then(function (res) {
        if (!res.ok) { showError(res); } else { clearError(); }
        refresh();
      });
    } else if (action === "key") {
      var input = li.querySelector('[data-role="new-key"]');
      if (!input.value) { input.focus(); return; }
      api("PATCH", url, { stream_key: input.value }).then(function (res) {
        if (!res.ok) { showError(res); return; }
        clearError();
        input.value = "";
        refresh();
      });
    } else if (action === "delete") {
      if (target.getAttribute("data-armed") !== "1") {
        target.setAttribute("data-armed", "1");
        target.textContent = "Click again to delete";
        return;
      }
      api("DELETE", url).then(function (res) {
        if (!res.ok) { showError(res); } else { clearError(); }
        refresh();
      });
    }
  });

  var preset = form.querySelector('[name="preset"]');
  var urlField = form.querySelector('[data-role="url-field"]');
  function presetChanged() { urlField.hidden = preset.value !== "custom"; }
  preset.addEventListener("change", presetChanged);
  presetChanged();

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = {
      name: form.elements.name.value,
      preset: preset.value,
      stream_key: form.elements.stream_key.value,
      source: form.elements.source.value,
      enabled: form.elements.enabled.checked
    };
    if (preset.value === "custom") body.ingest_url = form.elements.ingest_url.value;
    api("POST", base, body).then(function (res) {
      if (!res.ok) { showError(res); return; }
      clearError();
      form.reset();
      presetChanged();
      refresh();
    });
  });

  window.setInterval(refresh, 1000);
})();
