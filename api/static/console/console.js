// Relative times ("3 min ago") from each <time class="rel" datetime="…">, kept fresh; the absolute time is
// written by the server beside it. Runs again after htmx swaps in a live fragment.
(function () {
  "use strict";
  var UNITS = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];

  function relative(iso) {
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (Math.abs(seconds) < 1) return "just now";
    for (var i = 0; i < UNITS.length; i++) {
      if (Math.abs(seconds) >= UNITS[i][0]) {
        var amount = Math.floor(Math.abs(seconds) / UNITS[i][0]) + " " + UNITS[i][1];
        return seconds > 0 ? amount + " ago" : "in " + amount;
      }
    }
    return "just now";
  }

  function refresh(root) {
    var times = (root || document).querySelectorAll("time.rel[datetime]");
    for (var i = 0; i < times.length; i++) times[i].textContent = relative(times[i].getAttribute("datetime"));
  }

  document.addEventListener("DOMContentLoaded", function () { refresh(document); });
  document.addEventListener("htmx:afterSwap", function (event) { refresh(event.target); });
  setInterval(function () { refresh(document); }, 5000);
})();
