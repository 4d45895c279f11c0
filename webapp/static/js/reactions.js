// Live reactions (issue 16): a bar of emojis under the player; a tap sends reaction:send on the
// chat socket (window.aethexChat), the room's emotes follow the emojis (emotes:map), and
// every reaction:burst ({counts: {emoji: n}}, one per tick)
// makes that many emojis float up over the player on every page. Logged-in viewers only (the
// bar says so to visitors). DOM elements and textContent only; with prefers-reduced-motion the
// emojis fade in place instead of floating, and at most MAX_FLOATING are on screen at once.
"use strict";
(function () {
  var chat = window.aethexChat;
  var stage = document.querySelector(".stage");
  if (!chat || !stage) return;
  var MAX_FLOATING = 40;
  var DEFAULT = ["\u{1F44D}", "\u2764\uFE0F", "\u{1F602}", "\u{1F62E}", "\u{1F389}", "\u{1F525}"];
  var still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)");

  var layer = document.createElement("div");
  layer.className = "reaction-layer";
  layer.id = "reaction-layer";
  layer.setAttribute("aria-hidden", "true");
  stage.appendChild(layer);

  var bar = document.createElement("div");
  bar.className = "reaction-bar";
  bar.id = "reaction-bar";
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", "React");
  stage.parentNode.insertBefore(bar, stage.nextSibling);
  var seen = document.createElement("span");
  seen.className = "visually-hidden";
  seen.id = "reaction-count";
  seen.dataset.total = "0";
  bar.appendChild(seen);

  var emojis = null;
  // The room's emotes (emotes:map, emotes:changed): code -> picture URL; follower-only ones
  // are not reactions (the server refuses them).
  var emotes = {global: {}, channel: {}};

  function emoteSet(list) {
    var out = {};
    (list || []).forEach(function (e) {
      if (!e.follower_only && e.urls) out[e.code] = e.urls["28"] || e.urls[Object.keys(e.urls)[0]];
    });
    return out;
  }

  function emoteUrl(code) {
    return emotes.channel[code] || emotes.global[code] || null;
  }

  function face(parent, code) {
    var url = emoteUrl(code);
    if (!url) { parent.textContent = code; return; }
    var img = document.createElement("img");
    img.src = url;
    img.alt = code;
    img.className = "reaction-emote";
    parent.appendChild(img);
  }

  function button(code, me) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "reaction-button";
    face(b, code);
    b.dataset.emoji = code;
    b.setAttribute("aria-label", "React with " + code);
    b.disabled = !me;
    b.addEventListener("click", function () { chat.send({type: "reaction:send", emoji: code}); });
    bar.appendChild(b);
  }

  function build(list) {
    emojis = list;
    Array.prototype.slice.call(bar.querySelectorAll(".reaction-button, .reaction-hint")).forEach(function (b) { b.remove(); });
    var me = chat.me();
    list.forEach(function (emoji) { button(emoji, me); });
    var codes = Object.keys(emotes.channel).concat(Object.keys(emotes.global).filter(function (c) { return !emotes.channel[c]; }));
    codes.slice(0, 8).forEach(function (code) { button(code, me); });
    if (!me) {
      var hint = document.createElement("span");
      hint.className = "reaction-hint";
      hint.textContent = "Log in to react";
      bar.appendChild(hint);
    }
  }

  function float(emoji) {
    if (layer.childElementCount >= MAX_FLOATING) return;
    var e = document.createElement("span");
    e.className = "reaction-float" + (still && still.matches ? " reaction-still" : "");
    if (emojis && emojis.indexOf(emoji) >= 0) e.textContent = emoji;
    else face(e, emoji);
    e.style.left = (8 + Math.random() * 84) + "%";
    e.addEventListener("animationend", function () { e.remove(); });
    layer.appendChild(e);
  }

  chat.on("reaction:set", function (ev) { build(ev.emojis || DEFAULT); });
  chat.on("emotes:map", function (ev) {
    emotes = {global: emoteSet(ev.global), channel: emoteSet(ev.channel)};
    build(emojis || DEFAULT);
  });
  chat.on("emotes:changed", function (ev) {
    emotes[ev.scope === "global" ? "global" : "channel"] = emoteSet(ev.emotes);
    build(emojis || DEFAULT);
  });
  chat.on("chat:history", function () { build(emojis || DEFAULT); });
  chat.on("reaction:burst", function (ev) {
    var counts = ev.counts || {};
    var n = 0;
    Object.keys(counts).forEach(function (emoji) {
      var k = counts[emoji];
      n += k;
      for (var i = 0; i < Math.min(k, 10); i++) float(emoji);
    });
    seen.dataset.total = String(parseInt(seen.dataset.total, 10) + n);
  });
  build(DEFAULT);
})();
