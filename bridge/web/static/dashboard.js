// Paybridge dashboard: local times, live fragments over SSE, the pairing page watching for its phone.
// Plain script, no dependencies; every page works without it (it only saves reloads).
(function () {
  "use strict";
  var lang = document.body.getAttribute("data-lang") === "en" ? "en" : "zh-CN";

  function localTimes(root) {
    var items = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < items.length; i++) {
      var d = new Date(items[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        items[i].textContent = d.toLocaleString(lang, { hour12: false });
        items[i].title = items[i].getAttribute("datetime");
      }
    }
  }

  var regions = document.querySelectorAll("[data-live]");
  var pairing = document.getElementById("pairing");
  var busy = false, again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var jobs = [];
    for (var i = 0; i < regions.length; i++) {
      (function (el) {
        jobs.push(fetch(el.getAttribute("data-live"), { credentials: "same-origin", redirect: "manual" })
          .then(function (r) {
            if (r.status === 401) { window.location.reload(); }  // signed out: the page goes to sign-in
            return r.ok ? r.text() : null;
          })
          .then(function (html) {
            if (html !== null) { el.innerHTML = html; localTimes(el); }
          }));
      })(regions[i]);
    }
    Promise.all(jobs).catch(function () { return null; }).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  var done = false;
  function checkPairing() {
    if (!pairing || done) { return; }
    fetch(pairing.getAttribute("data-watch-url"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body || !body.paired || done) { return; }
        done = true;
        var text = pairing.getAttribute("data-paired-text").replace("{name}", body.name);
        document.getElementById("paired").textContent = text;
        document.getElementById("pair-waiting").hidden = true;
        document.getElementById("pair-done").hidden = false;
      })
      .catch(function () { return null; });
  }

  localTimes(document);
  if ((regions.length || pairing) && window.EventSource) {
    var state = document.getElementById("live-state");
    var source = new EventSource("/dashboard/live");
    source.addEventListener("open", function () { if (state) { state.setAttribute("data-state", "open"); } });
    source.addEventListener("error", function () { if (state) { state.setAttribute("data-state", "closed"); } });
    source.addEventListener("change", function () {
      if (regions.length) { refresh(); }
      checkPairing();
    });
  }
  if (regions.length) { window.setInterval(refresh, 20000); }  // heartbeats that change no status
  if (pairing) { window.setInterval(checkPairing, 3000); checkPairing(); }
})();
