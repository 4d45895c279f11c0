// The dashboard's channel points page (/dashboard/channels/{slug}/points): the live redemption
// queue (fulfil or refund), the prediction controls (start, lock, resolve, cancel) and, for the
// owner, the rewards and the earning rates, all through the JSON API with the page's CSRF
// token. New redemptions and prediction totals arrive over the channel's chat socket
// (points:redemption, prediction:update), so the queue fills without a reload. Server text goes
// in with textContent only.
(function () {
  "use strict";

  var root = document.getElementById("points-dashboard");
  if (!root) return;
  var slug = root.getAttribute("data-slug");
  var owner = root.getAttribute("data-owner") === "true";
  var chan = "/api/channels/" + encodeURIComponent(slug);
  var data = JSON.parse(document.getElementById("points-data").textContent);
  var pageError = root.querySelector('[data-role="page-error"]');
  var queueEl = root.querySelector('[data-role="queue"]');
  var queueEmpty = root.querySelector('[data-role="queue-empty"]');
  var queueCount = root.querySelector('[data-role="queue-count"]');
  var predictionEl = root.querySelector('[data-role="prediction"]');
  var predictionForm = root.querySelector('[data-role="prediction-form"]');
  var rewardsEl = root.querySelector('[data-role="rewards"]');
  var rewardForm = root.querySelector('[data-role="reward-form"]');
  var ratesForm = root.querySelector('[data-role="rates-form"]');
  var prediction = data.prediction;
  var rewards = data.rewards || [];
  var pending = {};

  var api = window.aethexApi.request;

  function showError(res) {
    pageError.textContent = window.aethexApi.errorText(res);
    pageError.hidden = false;
  }

  function clearError() { pageError.hidden = true; pageError.textContent = ""; }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function button(text, action, primary) {
    var b = el("button", "button" + (primary ? " button-primary" : ""), text);
    b.type = "button";
    b.setAttribute("data-action", action);
    return b;
  }

  // -- the queue ------------------------------------------------------------------------------

  function queueItem(r) {
    var li = el("li", "points-queue-item");
    li.setAttribute("data-id", r.id);
    var head = el("div", "points-queue-head");
    head.appendChild(el("strong", "", r.title));
    head.appendChild(el("span", "hint", " · " + r.cost + " points · @" + r.user.username + " · " +
                        new Date(r.created_at).toLocaleTimeString()));
    li.appendChild(head);
    if (r.text) li.appendChild(el("p", "points-queue-text", r.text));
    var actions = el("div", "points-queue-actions");
    actions.appendChild(button("Fulfil", "fulfil", true));
    actions.appendChild(button("Refund", "refund"));
    li.appendChild(actions);
    return li;
  }

  function drawQueue() {
    var ids = Object.keys(pending).map(Number).sort(function (a, b) { return a - b; });
    queueEl.textContent = "";
    ids.forEach(function (id) { queueEl.appendChild(queueItem(pending[id])); });
    queueEmpty.hidden = ids.length > 0;
    queueCount.textContent = String(ids.length);
  }

  function redemption(r) {
    if (r.status === "pending") pending[r.id] = r;
    else delete pending[r.id];
    drawQueue();
  }

  queueEl.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-action]");
    if (!b) return;
    var id = b.closest("[data-id]").getAttribute("data-id");
    b.disabled = true;
    api("POST", chan + "/redemptions/" + id + "/" + b.getAttribute("data-action")).then(function (res) {
      if (res.ok) { clearError(); redemption(res.data.redemption); }
      else if (res.status === 409) { delete pending[id]; drawQueue(); }
      else { b.disabled = false; showError(res); }
    });
  });

  // -- the prediction -------------------------------------------------------------------------

  function drawPrediction() {
    predictionEl.textContent = "";
    var running = prediction && (prediction.status === "open" || prediction.status === "locked");
    predictionForm.hidden = !!running;
    if (!prediction) {
      predictionEl.appendChild(el("p", "hint", "No prediction yet."));
      return;
    }
    var box = el("div", "prediction-admin");
    box.appendChild(el("p", "", prediction.question));
    var closed = new Date(prediction.locks_at) <= new Date();
    var state = prediction.status === "open" && closed ? "window closed" : prediction.status;
    box.appendChild(el("p", "hint", "Status: " + state + " · pool " + prediction.pool + " points"));
    var list = el("ul", "prediction-outcomes");
    prediction.outcomes.forEach(function (o) {
      var li = el("li", "", o.title + ": " + o.total + " points from " + o.stakers +
                  (o.stakers === 1 ? " viewer" : " viewers"));
      li.setAttribute("data-outcome", o.id);
      if (o.id === prediction.winning_outcome_id) li.appendChild(el("strong", "", " ✓ winner"));
      if (running) {
        var r = button("Resolve: " + o.title, "resolve");
        r.setAttribute("data-outcome-id", o.id);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(r);
      }
      list.appendChild(li);
    });
    box.appendChild(list);
    if (running) {
      var actions = el("div", "points-queue-actions");
      if (prediction.status === "open") actions.appendChild(button("Lock", "lock"));
      actions.appendChild(button("Cancel and refund", "cancel"));
      box.appendChild(actions);
    }
    predictionEl.appendChild(box);
  }

  predictionEl.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-action]");
    if (!b || !prediction) return;
    var action = b.getAttribute("data-action");
    var body = action === "resolve" ? { outcome_id: Number(b.getAttribute("data-outcome-id")) } : undefined;
    if (action === "resolve" && !body) return;
    b.disabled = true;
    api("POST", chan + "/predictions/" + prediction.id + "/" + action, body || {}).then(function (res) {
      if (res.ok) { clearError(); prediction = res.data.prediction; drawPrediction(); }
      else { b.disabled = false; showError(res); }
    });
  });

  predictionForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var f = predictionForm.elements;
    var outcomes = f.outcomes.value.split("\n").map(function (s) { return s.trim(); })
      .filter(function (s) { return s; });
    api("POST", chan + "/predictions", {
      question: f.question.value, outcomes: outcomes, window_seconds: Number(f.window_seconds.value)
    }).then(function (res) {
      if (res.ok) { clearError(); prediction = res.data.prediction; drawPrediction(); }
      else showError(res);
    });
  });

  // -- rewards and rates (owner) --------------------------------------------------------------

  function drawRewards() {
    if (!rewardsEl) return;
    rewardsEl.textContent = "";
    if (!rewards.length) rewardsEl.appendChild(el("li", "hint", "No rewards yet."));
    rewards.forEach(function (r) {
      var li = el("li", "points-reward-row");
      li.setAttribute("data-id", r.id);
      li.appendChild(el("strong", "", r.title));
      var rules = [r.cost + " points"];
      if (r.prompt) rules.push("asks: " + r.prompt);
      if (r.cooldown_seconds) rules.push("cooldown " + r.cooldown_seconds + " s");
      if (r.max_per_stream) rules.push(r.max_per_stream + " per stream");
      if (r.max_per_user_per_stream) rules.push(r.max_per_user_per_stream + " per viewer per stream");
      li.appendChild(el("span", "hint", " · " + rules.join(" · ") + " "));
      var label = el("label", "check");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.checked = r.enabled;
      box.setAttribute("data-action", "enabled");
      label.appendChild(box);
      label.appendChild(document.createTextNode(" Enabled"));
      li.appendChild(label);
      li.appendChild(button("Edit", "edit"));
      li.appendChild(button("Delete", "delete"));
      rewardsEl.appendChild(li);
    });
  }

  if (owner) {
    var editing = null;  // the reward the form edits, or null: the form adds one
    var submit = rewardForm.querySelector('button[type="submit"]');
    var FIELDS = ["title", "cost", "prompt", "cooldown_seconds", "max_per_stream",
                  "max_per_user_per_stream"];
    rewardsEl.addEventListener("click", function (e) {
      var ed = e.target.closest("button[data-action=edit]");
      if (ed) {
        editing = Number(ed.closest("[data-id]").getAttribute("data-id"));
        var r = rewards.filter(function (x) { return x.id === editing; })[0];
        FIELDS.forEach(function (name) { rewardForm.elements[name].value = r[name]; });
        submit.textContent = "Save reward";
        rewardForm.closest("details").open = true;
        rewardForm.elements.title.focus();
        return;
      }
      var b = e.target.closest("button[data-action=delete]");
      if (!b) return;
      var id = Number(b.closest("[data-id]").getAttribute("data-id"));
      api("DELETE", chan + "/rewards/" + id).then(function (res) {
        if (!res.ok) return showError(res);
        clearError();
        rewards = rewards.filter(function (r) { return r.id !== id; });
        drawRewards();
      });
    });
    rewardsEl.addEventListener("change", function (e) {
      var box = e.target.closest("input[data-action=enabled]");
      if (!box) return;
      var id = Number(box.closest("[data-id]").getAttribute("data-id"));
      api("PATCH", chan + "/rewards/" + id, { enabled: box.checked }).then(function (res) {
        if (!res.ok) { box.checked = !box.checked; return showError(res); }
        clearError();
      });
    });
    rewardForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var f = rewardForm.elements;
      var body = { title: f.title.value, cost: Number(f.cost.value), prompt: f.prompt.value,
                   cooldown_seconds: Number(f.cooldown_seconds.value),
                   max_per_stream: Number(f.max_per_stream.value),
                   max_per_user_per_stream: Number(f.max_per_user_per_stream.value) };
      var req = editing === null ? api("POST", chan + "/rewards", body)
                                 : api("PATCH", chan + "/rewards/" + editing, body);
      req.then(function (res) {
        if (!res.ok) return showError(res);
        clearError();
        var saved = res.data.reward;
        rewards = rewards.filter(function (r) { return r.id !== saved.id; });
        rewards.push(saved);
        editing = null;
        submit.textContent = "Add reward";
        rewards.sort(function (a, b) { return a.cost - b.cost || a.id - b.id; });
        drawRewards();
        f.title.value = "";
        f.prompt.value = "";
      });
    });
    ratesForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var f = ratesForm.elements;
      var saved = ratesForm.querySelector('[data-role="rates-saved"]');
      saved.hidden = true;
      api("PUT", chan + "/points/settings", {
        enabled: f.enabled.checked, watch_rate: Number(f.watch_rate.value),
        follow_bonus: Number(f.follow_bonus.value), chat_bonus: Number(f.chat_bonus.value)
      }).then(function (res) {
        if (!res.ok) return showError(res);
        clearError();
        saved.hidden = false;
      });
    });
  }

  // -- live events over the chat socket -------------------------------------------------------

  var retry = 1000;
  function connect() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(proto + "//" + location.host + "/ws/chat/" + encodeURIComponent(slug));
    ws.onopen = function () {
      retry = 1000;
      // What came while the socket was down (or before it opened) is read once.
      api("GET", chan + "/redemptions?status=pending").then(function (res) {
        if (res.ok) {
          res.data.redemptions.forEach(function (r) { pending[r.id] = r; });
          drawQueue();
        }
        root.setAttribute("data-live", "true");
      });
    };
    ws.onmessage = function (m) {
      var events;
      try { events = JSON.parse(m.data); } catch (err) { return; }
      if (!Array.isArray(events)) return;
      events.forEach(function (ev) {
        if (ev.type === "points:redemption") redemption(ev.redemption);
        else if (ev.type === "prediction:update") {
          if (!prediction || ev.prediction.id >= prediction.id) {
            prediction = ev.prediction;
            drawPrediction();
          }
        }
      });
    };
    ws.onclose = function () {
      root.setAttribute("data-live", "false");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  (data.queue || []).forEach(function (r) { pending[r.id] = r; });
  drawQueue();
  drawPrediction();
  drawRewards();
  connect();
})();
