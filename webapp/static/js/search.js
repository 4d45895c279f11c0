// The header's search box: suggestions from /api/search/suggest as the user types.
// Debounced (one request per pause in typing, the previous one aborted), keyboard navigable
// as an ARIA combobox: Down/Up move through the suggestions, Enter opens the chosen one (or
// searches, on /search, when none is chosen), Escape closes the list (a second one clears).
(function () {
  "use strict";
  var form = document.querySelector("form.site-search");
  if (!form) return;
  var input = form.querySelector(".site-search-input");
  var list = form.querySelector(".site-search-list");
  var endpoint = form.getAttribute("data-suggest");
  var DEBOUNCE_MS = 150;
  var MIN_CHARS = 2;
  var GROUPS = [
    ["channels", "Channels"],
    ["categories", "Categories"],
    ["users", "People"],
    ["videos", "Past broadcasts"]
  ];
  var timer = null;
  var pending = null;
  var options = [];
  var active = -1;
  var lastQuery = null;

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function setActive(index) {
    if (active >= 0 && options[active]) options[active].setAttribute("aria-selected", "false");
    active = index;
    if (active >= 0 && options[active]) {
      options[active].setAttribute("aria-selected", "true");
      input.setAttribute("aria-activedescendant", options[active].id);
      options[active].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function label(kind, item) {
    if (kind === "channels") return item.name + (item.live ? " · live" : "");
    if (kind === "users") return item.display_name + " (@" + item.username + ")";
    if (kind === "categories") return item.name;
    return item.title + " · " + item.channel_name;
  }

  function option(text, url, extraClass) {
    var li = document.createElement("li");
    li.id = "site-search-opt-" + options.length;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    li.className = "site-search-option" + (extraClass ? " " + extraClass : "");
    li.setAttribute("data-url", url);
    li.textContent = text;
    // mousedown, not click: the input would lose focus (and close the list) first.
    li.addEventListener("mousedown", function (event) {
      event.preventDefault();
      window.location.assign(url);
    });
    options.push(li);
    return li;
  }

  function render(query, body) {
    list.textContent = "";
    options = [];
    active = -1;
    GROUPS.forEach(function (group) {
      var items = body[group[0]] || [];
      if (!items.length) return;
      var heading = document.createElement("li");
      heading.setAttribute("role", "presentation");
      heading.className = "site-search-group";
      heading.textContent = group[1];
      list.appendChild(heading);
      items.forEach(function (item) {
        list.appendChild(option(label(group[0], item), item.url, item.live ? "is-live" : ""));
      });
    });
    list.appendChild(
      option('Search for "' + query + '"', "/search?q=" + encodeURIComponent(query), "site-search-all")
    );
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  function fetchSuggestions() {
    var query = input.value.trim();
    if (query.length < MIN_CHARS) {
      lastQuery = null;
      close();
      list.textContent = "";
      options = [];
      return;
    }
    if (query === lastQuery && !list.hidden) return;
    lastQuery = query;
    if (pending) pending.abort();
    pending = new AbortController();
    fetch(endpoint + "?q=" + encodeURIComponent(query), {
      signal: pending.signal,
      headers: { Accept: "application/json" }
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        // Only the answer to what the box holds now: a slow one for older text is dropped.
        if (body && input.value.trim() === query && document.activeElement === input) {
          render(query, body);
        }
      })
      .catch(function () { /* aborted, or offline: the form still submits to /search */ });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(fetchSuggestions, DEBOUNCE_MS);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (list.hidden) {
        if (options.length && input.value.trim() === lastQuery) {
          list.hidden = false;
          input.setAttribute("aria-expanded", "true");
        } else {
          fetchSuggestions();
        }
        event.preventDefault();
        return;
      }
      var step = event.key === "ArrowDown" ? 1 : -1;
      var next = active + step;
      if (next < -1) next = options.length - 1;
      if (next >= options.length) next = -1;
      setActive(next);
      event.preventDefault();
    } else if (event.key === "Enter") {
      if (!list.hidden && active >= 0 && options[active]) {
        event.preventDefault();
        window.location.assign(options[active].getAttribute("data-url"));
      }
      // Otherwise the form submits: /search?q=...
    } else if (event.key === "Escape") {
      if (!list.hidden) {
        close();
      } else {
        input.value = "";
        lastQuery = null;
      }
      event.preventDefault();
    }
  });

  input.addEventListener("blur", close);
  input.addEventListener("focus", function () {
    if (options.length && input.value.trim() === lastQuery) {
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }
  });
})();
