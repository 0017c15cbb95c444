// Paybridge checkout: count down, follow the order's status, move on once paid.
// Plain script, no dependencies; the page works without it (a meta refresh does the same, slower).
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) { return; }
  var statusUrl = root.getAttribute("data-status-url");
  var state = root.getAttribute("data-state");
  var watching = root.getAttribute("data-watch") === "true";
  var pollMs = parseInt(root.getAttribute("data-poll-ms"), 10) || 2000;
  var deadline = Date.now() + (parseInt(root.getAttribute("data-seconds-left"), 10) || 0) * 1000;
  var countdown = document.getElementById("countdown");
  var timer = null;
  var finished = false;

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function clock(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h > 0 ? h + ":" + pad(m) + ":" + pad(s) : pad(m) + ":" + pad(s);
  }

  function tick() {
    if (!countdown || finished) { return; }
    var left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    countdown.textContent = clock(left);
    if (left === 0) { poll(); } else { window.setTimeout(tick, 1000 - (Date.now() % 1000) + 5); }
  }

  function paid(returnUrl) {
    finished = true;
    if (!returnUrl) { window.location.reload(); return; }
    var pending = document.getElementById("pending-panel");
    var panel = document.getElementById("paid-panel");
    var link = document.getElementById("return-link");
    var warning = document.getElementById("amount-warning");
    var label = document.getElementById("amount-label");
    var holder = document.getElementById("status-badge");
    var badge = holder && holder.querySelector(".badge");
    if (pending) { pending.hidden = true; }
    if (warning) { warning.hidden = true; }
    if (label) { label.textContent = label.getAttribute("data-paid"); }
    if (badge) { badge.className = "badge badge-paid"; badge.textContent = holder.getAttribute("data-paid"); }
    if (panel) { panel.hidden = false; }
    if (link) { link.setAttribute("href", returnUrl); }
    window.setTimeout(function () { window.location.replace(returnUrl); }, 1200);
  }

  function schedule(ms) {
    if (finished) { return; }
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, ms);
  }

  function poll() {
    if (finished) { return; }
    var xhr = new XMLHttpRequest();
    xhr.open("GET", statusUrl, true);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () {
      if (xhr.status === 429) { schedule(pollMs * 3); return; }
      if (xhr.status !== 200) { schedule(pollMs * 2); return; }
      var s;
      try { s = JSON.parse(xhr.responseText); } catch (e) { schedule(pollMs * 2); return; }
      if (s.status === "paid") { paid(s.return_url); return; }
      if (s.status !== state) { finished = true; window.location.reload(); return; }
      deadline = Date.now() + s.seconds_left * 1000;
      if (s.watch) { schedule(state === "pending" ? pollMs : pollMs * 5); }
    };
    xhr.onerror = function () { schedule(pollMs * 2); };
    xhr.send();
  }

  if (state === "pending") { tick(); }
  if (watching) { schedule(pollMs); }
}());
