// Channel points in the chat column (issue 16): under the chat input, a button with the
// viewer's balance opens the channel's rewards (redeem, with a text when the reward asks for
// one); the channel's prediction shows above it with live totals (prediction:update from the
// room, via window.aethexChat) and, while its window is open, a stake form. While the player
// plays, a heartbeat (POST /api/points/heartbeat) lets the server credit watching, which it
// does only if this login's player really fetched the stream's media. Moderators get a link
// to the redemption queue. Server text goes in with textContent only.
(function () {
  "use strict";

  var root = document.getElementById("points");
  if (!root) return;
  var slug = root.getAttribute("data-slug");
  var chan = "/api/channels/" + encodeURIComponent(slug);
  var loggedIn = root.getAttribute("data-user") === "true";
  var info = null;       // GET /api/channels/{slug}/points
  var prediction = null;
  var myStake = null;
  var beatTimer = null;
  var loadedAt = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var api = window.aethexApi.request;
  var errorText = window.aethexApi.errorText;

  // -- the bar, the panel and the prediction box (built once) --------------------------------
  var predictionBox = el("section", "prediction");
  predictionBox.id = "prediction";
  predictionBox.setAttribute("aria-label", "Prediction");
  predictionBox.setAttribute("aria-live", "polite");
  predictionBox.hidden = true;
  var bar = el("div", "points-bar");
  var toggle = el("button", "button points-toggle");
  toggle.type = "button";
  toggle.id = "points-toggle";
  toggle.setAttribute("aria-expanded", "false");
  toggle.setAttribute("aria-controls", "points-panel");
  var balanceEl = el("span", "points-balance", "0");
  balanceEl.id = "points-balance";
  toggle.appendChild(document.createTextNode("★ "));
  toggle.appendChild(balanceEl);
  toggle.appendChild(document.createTextNode(" points"));
  bar.appendChild(toggle);
  var queueLink = el("a", "points-queue-link", "Queue and predictions");
  queueLink.href = "/dashboard/channels/" + encodeURIComponent(slug) + "/points";
  queueLink.hidden = true;
  bar.appendChild(queueLink);
  var panel = el("div", "points-panel");
  panel.id = "points-panel";
  panel.hidden = true;
  var message = el("p", "points-message");
  message.setAttribute("role", "status");
  var rewardList = el("ul", "points-rewards");
  rewardList.setAttribute("aria-label", "Rewards");
  panel.appendChild(message);
  panel.appendChild(rewardList);
  root.appendChild(predictionBox);
  if (loggedIn) {
    root.appendChild(bar);
    root.appendChild(panel);
  }

  function say(text, bad) {
    message.textContent = text || "";
    message.className = "points-message" + (bad ? " points-message-error" : "");
  }

  function setBalance(n) {
    if (typeof n === "number") {
      info.balance = n;
      balanceEl.textContent = new Intl.NumberFormat().format(n);
    }
  }

  function drawRewards() {
    // Keep what the viewer is typing across a redraw (a refresh may land mid-typing).
    var typed = {};
    Array.prototype.forEach.call(rewardList.querySelectorAll("[data-id] input"), function (i) {
      typed[i.closest("[data-id]").getAttribute("data-id")] = i.value;
    });
    rewardList.textContent = "";
    if (!info.rewards.length) {
      rewardList.appendChild(el("li", "hint", "This channel has no rewards yet."));
      return;
    }
    info.rewards.forEach(function (r) {
      if (!r.enabled) return;
      var li = el("li", "points-reward");
      li.setAttribute("data-id", r.id);
      var head = el("div", "points-reward-head");
      head.appendChild(el("strong", "", r.title));
      head.appendChild(el("span", "points-cost", " " + r.cost + " ★"));
      li.appendChild(head);
      var form = el("form", "points-redeem");
      if (r.prompt) {
        var input = document.createElement("input");
        input.name = "text";
        input.maxLength = 200;
        input.required = true;
        input.placeholder = r.prompt;
        input.setAttribute("aria-label", r.prompt);
        input.value = typed[String(r.id)] || "";
        form.appendChild(input);
      }
      var cooling = r.cooling_until && new Date(r.cooling_until) > new Date();
      var go = el("button", "button button-primary", cooling ? "Cooling down" : "Redeem");
      go.type = "submit";
      go.disabled = info.balance < r.cost || cooling;
      form.appendChild(go);
      li.appendChild(form);
      rewardList.appendChild(li);
    });
  }

  rewardList.addEventListener("submit", function (e) {
    e.preventDefault();
    var form = e.target;
    var id = form.closest("[data-id]").getAttribute("data-id");
    var text = form.elements.text ? form.elements.text.value : "";
    var go = form.querySelector("button");
    go.disabled = true;
    api("POST", chan + "/rewards/" + id + "/redeem", { text: text }).then(function (res) {
      if (res.ok) {
        setBalance(res.data.balance);
        say("Redeemed " + res.data.redemption.title + ".");
        if (form.elements.text) form.elements.text.value = "";
        refresh();  // its cooldown and limits may have changed
      } else {
        say(errorText(res), true);
        drawRewards();
      }
    });
  });

  toggle.addEventListener("click", function () {
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden && Date.now() - loadedAt > 10000) refresh();
  });

  // -- prediction --------------------------------------------------------------------------
  function drawPrediction() {
    predictionBox.textContent = "";
    var p = prediction;
    if (!p || p.status === "cancelled") { predictionBox.hidden = true; return; }
    predictionBox.hidden = false;
    var open = p.status === "open" && new Date(p.locks_at) > new Date();
    predictionBox.appendChild(el("h3", "prediction-question", p.question));
    var state = open ? "Open for stakes" : p.status === "resolved" ? "Resolved" : "Stakes locked";
    predictionBox.appendChild(el("p", "hint", state + " · " + p.pool + " points staked"));
    var list = el("ul", "prediction-outcomes");
    p.outcomes.forEach(function (o) {
      var li = el("li", "prediction-outcome");
      li.setAttribute("data-outcome", o.id);
      var pct = p.pool ? Math.round((100 * o.total) / p.pool) : 0;
      var label = o.title + " · " + pct + "% · " + o.total + " ★ · " + o.stakers;
      if (o.id === p.winning_outcome_id) label += " · winner";
      if (myStake && myStake.outcome_id === o.id) label += " · your stake " + myStake.amount;
      li.appendChild(el("span", "prediction-label", label));
      var meter = el("span", "prediction-meter");
      var fill = el("span", "prediction-fill");
      fill.style.width = pct + "%";
      meter.appendChild(fill);
      li.appendChild(meter);
      if (open && loggedIn && (!myStake || myStake.outcome_id === o.id)) {
        var form = el("form", "prediction-stake");
        var amount = document.createElement("input");
        amount.type = "number";
        amount.min = "1";
        amount.name = "amount";
        amount.value = "10";
        amount.setAttribute("aria-label", "Points on " + o.title);
        var go = el("button", "button", "Stake");
        go.type = "submit";
        form.appendChild(amount);
        form.appendChild(go);
        li.appendChild(form);
      }
      list.appendChild(li);
    });
    predictionBox.appendChild(list);
  }

  predictionBox.addEventListener("submit", function (e) {
    e.preventDefault();
    var form = e.target;
    var outcome = Number(form.closest("[data-outcome]").getAttribute("data-outcome"));
    api("POST", chan + "/predictions/" + prediction.id + "/stake",
        { outcome_id: outcome, amount: Number(form.elements.amount.value) }).then(function (res) {
      if (res.ok) {
        myStake = res.data.my_stake;
        prediction = res.data.prediction;
        setBalance(res.data.balance);
        drawPrediction();
      } else say(errorText(res), true);
    });
  });

  // -- data --------------------------------------------------------------------------------
  function refresh() {
    return api("GET", chan + "/points").then(function (res) {
      if (!res.ok) return;
      info = res.data;
      loadedAt = Date.now();
      root.hidden = !info.enabled && !info.prediction;
      setBalance(info.balance);
      queueLink.hidden = !info.can_moderate;
      if (!prediction || (info.prediction && info.prediction.id >= prediction.id)) {
        prediction = info.prediction;
      }
      myStake = info.my_stake;
      drawRewards();
      drawPrediction();
    });
  }

  function playing() {
    var p = window.aethexPlayer;
    if (!p || p.state !== "live") return false;
    var v = p.video;
    return !!v && !v.paused && !v.ended && v.readyState > 2;
  }

  function beat() {
    var next = (info && info.heartbeat_interval) || 30;
    if (playing()) {
      api("POST", "/api/points/heartbeat", { slug: slug }).then(function (res) {
        if (res.ok && res.data && res.data.next_in) next = res.data.next_in;
      });
    }
    clearTimeout(beatTimer);
    beatTimer = setTimeout(beat, Math.max(5, next) * 1000);
  }

  if (window.aethexChat) {
    window.aethexChat.on("prediction:update", function (ev) {
      if (prediction && ev.prediction.id < prediction.id) return;
      if (!prediction || ev.prediction.id !== prediction.id) myStake = null;
      prediction = ev.prediction;
      drawPrediction();
      // Paid out or refunded: the balance changed.
      if (myStake && (prediction.status === "resolved" || prediction.status === "cancelled")) {
        refresh();
      }
    });
    window.aethexChat.on("points:redemption", function (ev) {
      var me = window.aethexChat.me();
      var r = ev.redemption;
      var list = document.getElementById("chat-messages");
      if (r.status === "pending" && list) {  // a line in chat, like the room's other notices
        var li = el("li", "chat-message chat-system points-line",
                    "@" + r.user.username + " redeemed " + r.title + (r.text ? ": " + r.text : ""));
        var stuck = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        list.appendChild(li);
        if (stuck) list.scrollTop = list.scrollHeight;
      }
      if (me && ev.redemption.user.id === me.id && ev.redemption.status === "refunded") {
        say("Your " + ev.redemption.title + " was refunded.");
        refresh();
      }
    });
  }

  refresh().then(function () { if (loggedIn) beat(); });
  // Earned points land at each flush on the server: look again now and then.
  if (loggedIn) setInterval(function () { if (!document.hidden) refresh(); }, 60000);
})();
