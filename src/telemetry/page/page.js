// Live updates: /events (server-sent events) sends the freshly rendered
// live part of the page whenever the daemon's state changes. Without
// JavaScript the page is a snapshot that reloads itself.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!live || !conn || !window.EventSource) return;
  var source = new EventSource("events");
  source.addEventListener("status", function (e) {
    live.innerHTML = e.data;
    conn.textContent = "live";
    conn.className = "live";
    conn.title = "Updated as the daemon's state changes";
  });
  source.onerror = function () {
    // EventSource reconnects by itself.
    conn.textContent = "reconnecting…";
    conn.className = "stale";
  };
})();
