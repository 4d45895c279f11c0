// Raids (issue 16). On the viewer page: follow a raid (raid:go takes the page to the target),
// show the arrival notice (?raid=ID, read back from the API so the notice cannot be forged by
// a link), a system line in chat when this channel is raided, and the owner's Raid picker in
// the chat column. On the dashboard's raids page: the picker and the channel's settings.
// Text goes in with textContent only.
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  function api(method, url, body) {
    var opts = {method: method, credentials: "same-origin",
                headers: {"Accept": "application/json"}};
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      if (r.ok) return r.json();
      return r.json().catch(function () { return {}; }).then(function (d) {
        throw new Error((d.error && d.error.message) || ("HTTP " + r.status));
      });
    });
  }

  function viewersText(n) { return n + (n === 1 ? " viewer" : " viewers"); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A search box and a list of live channels, each with a Raid button.
  function picker(slug, input, list, say) {
    var timer = null, seq = 0;
    function load() {
      var mine = ++seq;
      api("GET", "/api/channels/" + encodeURIComponent(slug) + "/raid-targets?q=" +
          encodeURIComponent(input.value.trim())).then(function (d) {
        if (mine !== seq) return;
        list.textContent = "";
        if (!d.channels.length) { list.appendChild(el("li", "raid-none", "No live channel found.")); return; }
        d.channels.forEach(function (c) {
          var li = el("li", "raid-target");
          li.dataset.slug = c.slug;
          li.appendChild(el("strong", "", c.name));
          li.appendChild(el("span", "raid-target-meta", " " + c.title + " · " + viewersText(c.viewers) + " "));
          var b = el("button", "button button-small", "Raid");
          b.type = "button";
          b.setAttribute("aria-label", "Raid " + c.name);
          // Two clicks: the first asks (no dialog), the second raids.
          b.addEventListener("click", function () {
            if (!b.dataset.armed) {
              b.dataset.armed = "1";
              b.textContent = "Confirm raid";
              b.setAttribute("aria-label", "Confirm: send your viewers to " + c.name);
              return;
            }
            b.disabled = true;
            api("POST", "/api/channels/" + encodeURIComponent(slug) + "/raids", {target: c.slug})
              .then(function (r) { say("Raiding " + r.raid.to.name + " with " + viewersText(r.raid.viewers) + ".", false); },
                    function (e) { say(e.message, true); })
              .then(function () { b.disabled = false; });
          });
          li.appendChild(b);
          list.appendChild(li);
        });
      }, function (e) { say(e.message, true); });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(load, 250); });
    load();
  }

  // -- the dashboard's raids page ------------------------------------------------------------
  var page = document.getElementById("raids-page");
  if (page) {
    var pslug = page.dataset.slug;
    var ok = document.getElementById("raid-ok"), err = document.getElementById("raid-error");
    picker(pslug, document.getElementById("raid-query"), document.getElementById("raid-targets"),
      function (text, bad) { ok.hidden = bad; err.hidden = !bad; (bad ? err : ok).textContent = text; });
    document.getElementById("raid-search").addEventListener("submit", function (e) { e.preventDefault(); });
    var form = document.getElementById("raid-settings");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var fok = form.querySelector('[data-role="ok"]'), ferr = form.querySelector('[data-role="error"]');
      var policy = form.querySelector('input[name="raid_policy"]:checked');
      api("PATCH", "/api/channels/" + encodeURIComponent(pslug) + "/extras", {
        raid_policy: policy ? policy.value : "anyone",
        typing_indicators: form.elements.typing_indicators.checked,
      }).then(function () { ferr.hidden = true; fok.hidden = false; fok.textContent = "Saved."; },
              function (x) { fok.hidden = true; ferr.hidden = false; ferr.textContent = x.message; });
    });
    return;
  }

  // -- the viewer page -----------------------------------------------------------------------
  var chat = window.aethexChat;
  var root = document.getElementById("chat");
  if (!chat || !root) return;
  var slug = chat.slug;
  var notice = el("p", "raid-notice");
  notice.id = "raid-notice";
  notice.setAttribute("role", "status");
  notice.hidden = true;
  root.insertBefore(notice, root.firstChild);

  function show(text) { notice.textContent = text; notice.hidden = false; }

  var params = new URLSearchParams(location.search);
  var arrived = params.get("raid");
  if (arrived && /^[0-9]{1,18}$/.test(arrived)) {
    api("GET", "/api/channels/" + encodeURIComponent(slug) + "/raids/" + arrived).then(function (d) {
      if (d.raid.to.slug !== slug) return;
      show(d.raid.from.name + " is raiding with " + viewersText(d.raid.viewers) + "!");
      document.body.dataset.raidedBy = d.raid.from.slug;
    }, function () {});
    params.delete("raid");
    var rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }

  chat.on("raid:go", function (ev) {
    var me = chat.me();
    if (me && me.is_owner) {
      show("Your raid to " + ev.to.name + " is on its way (" + viewersText(ev.viewers) + ").");
      return;
    }
    show("Raiding " + ev.to.name + "…");
    location.assign(ev.url);
  });

  chat.on("raid:incoming", function (ev) {
    var list = document.getElementById("chat-messages");
    var li = el("li", "chat-message chat-system",
      ev.from.name + " is raiding with " + viewersText(ev.viewers) + "!");
    li.dataset.raid = ev.raid_id;
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  });

  // The owner's Raid tool under the chat input.
  var tools = null;
  chat.on("chat:history", function () {
    var me = chat.me();
    if (!me || !me.is_owner || tools) return;
    tools = el("details", "raid-tools");
    tools.id = "raid-tools";
    tools.appendChild(el("summary", "button button-small", "Raid"));
    var input = el("input", "raid-query");
    input.type = "search";
    input.maxLength = 100;
    input.placeholder = "Search live channels";
    input.setAttribute("aria-label", "Search live channels to raid");
    var list = el("ul", "raid-targets");
    var say = el("p", "raid-say");
    say.setAttribute("role", "status");
    tools.appendChild(input);
    tools.appendChild(list);
    tools.appendChild(say);
    var started = false;
    tools.addEventListener("toggle", function () {
      if (!tools.open || started) return;
      started = true;
      picker(slug, input, list, function (text) { say.textContent = text; });
    });
    root.appendChild(tools);
  });
})();
