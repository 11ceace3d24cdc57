// agora web UI: live refresh. The page follows /ui/events (server-sent
// events "INDEX LEADER RAFTSTATE"); when any of them changes it
// fetches itself again and swaps #content. A dropped stream is shown.
(function () {
  "use strict";
  var body = document.body;
  if (!body || body.dataset.live !== "true" || !window.EventSource) { return; }
  var live = document.getElementById("live");
  var last = body.dataset.index + " " + body.dataset.leader + " " + body.dataset.raft;
  var busy = false, again = false;

  function stale(on) {
    var s = document.getElementById("stale");
    if (s) { s.hidden = !on; }
    live.textContent = on ? "stale" : "live";
    live.className = "live " + (on ? "off" : "on");
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var next = doc.getElementById("content");
        var cur = document.getElementById("content");
        if (next && cur) {
          var wasStale = !document.getElementById("stale").hidden;
          cur.replaceWith(next);
          stale(wasStale);
          body.dataset.index = doc.body.dataset.index;
          body.dataset.leader = doc.body.dataset.leader;
          body.dataset.raft = doc.body.dataset.raft;
          document.dispatchEvent(new Event("agora:refreshed"));
        }
      })
      .catch(function () { stale(true); })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  var es = new EventSource("/ui/events");
  es.onopen = function () { stale(false); };
  es.onerror = function () { stale(true); };
  es.onmessage = function (e) {
    var key = e.data;
    stale(false);
    if (key !== last) { last = key; refresh(); }
  };
})();
