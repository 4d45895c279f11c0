// The JSON API calls the page scripts share (loaded by base.html before any page script).
// window.aethexApi.request(method, url, body) sends the page's CSRF token (the csrf-token meta)
// on every method but GET, the body (when given) as JSON, bypasses the HTTP cache, and resolves
// to {ok, status, data}: data is null when the answer is not JSON, status is 0 when the server
// could not be reached. It never rejects, so callers test res.ok.
// window.aethexApi.errorText(res, fallback) is the text to show for a failed call: the server's
// error message, else the fallback when one is given, else what went wrong in plain words.
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  function request(method, url, body) {
    var init = { method: method, headers: { Accept: "application/json" }, cache: "no-store",
                 credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (data) {
        return { ok: r.ok, status: r.status, data: data };
      });
    }, function () { return { ok: false, status: 0, data: null }; });
  }

  function errorText(res, fallback) {
    if (res.data && res.data.error && res.data.error.message) return res.data.error.message;
    if (fallback !== undefined) return fallback;
    return res.status ? "The server answered " + res.status + "." : "The server could not be reached.";
  }

  window.aethexApi = { request: request, errorText: errorText };
})();
