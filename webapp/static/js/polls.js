// Live polls in the chat column (issue 16): the running poll with its bars, one vote per
// viewer, the moderators' "Start a poll" tool and "End poll", and the result in the chat list
// when a poll ends. Rides on chat.js's room (window.aethexChat): frames poll:start, poll:vote,
// poll:end out; events poll:start, poll:tally, poll:end, poll:voted in. Built with DOM
// elements and textContent only (questions and options are user text).
"use strict";
(function () {
  var chat = window.aethexChat;
  var root = document.getElementById("chat");
  if (!chat || !root) return;
  var messages = document.getElementById("chat-messages");

  var poll = null;      // the running poll: {id, question, options: [{text, votes}], endsAt}
  var voted = {};       // poll id -> option index this page voted for
  var timer = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // -- the poll box ----------------------------------------------------------------------------
  var box = el("section", "poll-box");
  box.id = "poll-box";
  box.setAttribute("aria-label", "Poll");
  box.hidden = true;
  var tools = el("div", "poll-tools");
  tools.hidden = true;
  root.insertBefore(box, messages);
  root.insertBefore(tools, box);

  function total(p) {
    return p.options.reduce(function (n, o) { return n + o.votes; }, 0);
  }

  function render() {
    box.textContent = "";
    if (!poll) { box.hidden = true; return; }
    box.hidden = false;
    var me = chat.me();
    var mine = voted[poll.id];
    var sum = total(poll);
    box.appendChild(el("p", "poll-label", poll.ended ? "Poll ended" : "Poll"));
    box.appendChild(el("p", "poll-question", poll.question));
    var list = el("ol", "poll-options");
    poll.options.forEach(function (o, i) {
      var li = el("li", "poll-option" + (mine === i ? " poll-mine" : ""));
      var share = sum ? Math.round(100 * o.votes / sum) : 0;
      var canVote = me && !poll.ended && mine === undefined;
      var label = el(canVote ? "button" : "div", "poll-choice");
      if (canVote) {
        label.type = "button";
        label.addEventListener("click", function () {
          chat.send({type: "poll:vote", id: poll.id, option: i});
        });
      }
      label.appendChild(el("span", "poll-text", o.text));
      label.appendChild(el("span", "poll-count", o.votes + " · " + share + "%"));
      var bar = el("span", "poll-bar");
      bar.style.width = share + "%";
      label.appendChild(bar);
      li.appendChild(label);
      list.appendChild(li);
    });
    box.appendChild(list);
    var foot = el("p", "poll-foot");
    var left = poll.ended ? "" : " · " + Math.max(0, Math.ceil((poll.endsAt - Date.now()) / 1000)) + " s left";
    foot.appendChild(el("span", "poll-total", sum + (sum === 1 ? " vote" : " votes") + left));
    if (!me && !poll.ended) foot.appendChild(el("span", "poll-hint", " · log in to vote"));
    box.appendChild(foot);
    if (me && me.can_moderate && !poll.ended) {
      var end = el("button", "button poll-end", "End poll");
      end.type = "button";
      end.addEventListener("click", function () { chat.send({type: "poll:end", id: poll.id}); });
      box.appendChild(end);
    }
    clearTimeout(timer);
    if (!poll.ended) timer = setTimeout(render, 1000);
  }

  function fromEvent(p, endsIn) {
    return {
      id: p.id,
      question: p.question,
      options: p.options.map(function (o) { return {text: o.text, votes: o.votes}; }),
      endsAt: Date.now() + (endsIn || 0) * 1000,
      ended: !p.running,
    };
  }

  // -- the moderators' tool -----------------------------------------------------------------
  var form = null;

  function optionInput(n) {
    var input = el("input", "poll-option-input");
    input.type = "text";
    input.maxLength = 80;
    input.placeholder = "Option " + n;
    input.setAttribute("aria-label", "Option " + n);
    return input;
  }

  function buildTools() {
    tools.textContent = "";
    var me = chat.me();
    tools.hidden = !(me && me.can_moderate);
    if (tools.hidden) return;
    var open = el("button", "button poll-open", "Start a poll");
    open.type = "button";
    open.id = "poll-open";
    form = el("form", "poll-form");
    form.id = "poll-form";
    form.hidden = true;
    var q = el("input", "poll-question-input");
    q.type = "text";
    q.name = "question";
    q.maxLength = 200;
    q.required = true;
    q.placeholder = "Question";
    q.setAttribute("aria-label", "Poll question");
    form.appendChild(q);
    var opts = el("div", "poll-option-inputs");
    opts.appendChild(optionInput(1));
    opts.appendChild(optionInput(2));
    form.appendChild(opts);
    var row = el("div", "poll-form-row");
    var more = el("button", "button poll-more", "+ Option");
    more.type = "button";
    more.addEventListener("click", function () {
      var n = opts.children.length;
      if (n < 5) opts.appendChild(optionInput(n + 1));
      more.disabled = opts.children.length >= 5;
    });
    var dur = el("select", "poll-duration");
    dur.setAttribute("aria-label", "Duration");
    [[30, "30 s"], [60, "1 min"], [120, "2 min"], [300, "5 min"]].forEach(function (d) {
      var o = el("option", null, d[1]);
      o.value = String(d[0]);
      dur.appendChild(o);
    });
    dur.value = "60";
    var go = el("button", "button poll-go", "Start");
    go.type = "submit";
    row.appendChild(more);
    row.appendChild(dur);
    row.appendChild(go);
    form.appendChild(row);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var options = [];
      opts.querySelectorAll("input").forEach(function (i) {
        if (i.value.trim()) options.push(i.value.trim());
      });
      chat.send({type: "poll:start", question: q.value, options: options, duration: parseInt(dur.value, 10)});
      form.hidden = true;
      q.value = "";
      opts.querySelectorAll("input").forEach(function (i) { i.value = ""; });
    });
    open.addEventListener("click", function () {
      form.hidden = !form.hidden;
      if (!form.hidden) q.focus();
    });
    tools.appendChild(open);
    tools.appendChild(form);
  }

  // -- room events ------------------------------------------------------------------------------
  chat.on("chat:history", function () { buildTools(); render(); });
  chat.on("poll:start", function (ev) {
    if (poll && poll.id === ev.poll.id && !poll.ended) {
      // The same poll again (a reconnect's first frame): keep the larger counts.
      ev.poll.options.forEach(function (o, i) { poll.options[i].votes = Math.max(poll.options[i].votes, o.votes); });
    } else {
      poll = fromEvent(ev.poll, ev.ends_in);
    }
    render();
  });
  chat.on("poll:tally", function (ev) {
    if (!poll || poll.id !== ev.id || poll.ended) return;
    ev.counts.forEach(function (n, i) {
      if (poll.options[i]) poll.options[i].votes = Math.max(poll.options[i].votes, n);
    });
    render();
  });
  chat.on("poll:voted", function (ev) { voted[ev.id] = ev.option; render(); });
  chat.on("chat:error", function (ev) {
    if (ev.code === "already_voted" && poll && ev.id === poll.id && ev.option !== null && ev.option !== undefined) {
      voted[ev.id] = ev.option;
      render();
    }
  });
  chat.on("poll:end", function (ev) {
    poll = fromEvent(ev.poll, 0);
    render();
    // The result also goes into the chat list, where it stays as the talk moves on.
    var li = el("li", "chat-poll-result");
    var sum = total(poll);
    li.appendChild(el("strong", null, "Poll: " + poll.question));
    poll.options.forEach(function (o) {
      var share = sum ? Math.round(100 * o.votes / sum) : 0;
      li.appendChild(el("span", "chat-poll-line", o.text + ": " + o.votes + " (" + share + "%)"));
    });
    messages.appendChild(li);
    messages.scrollTop = messages.scrollHeight;
  });

  // In case the room's first frame came before this script ran (it is loaded after chat.js).
  if (chat.me()) buildTools();
  fetch("/api/channels/" + encodeURIComponent(chat.slug) + "/polls/current", {credentials: "same-origin"})
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (doc) {
      if (!doc || !doc.poll || poll) return;
      poll = fromEvent(doc.poll, (Date.parse(doc.poll.ends_at) - Date.now()) / 1000);
      render();
    })
    .catch(function () {});
})();
