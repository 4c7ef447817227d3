// gemsight kiosk: the incidents and history pages stay live. On an event of the kind the page shows
// (data-live="incident" or "slot"), the page's own URL (its filters included) is fetched again and the
// live part swapped in; never while someone types in it (then once they leave the field). The banner
// turns red on a health event on every page.
"use strict";
(function () {
  const part = document.querySelector("[data-live]");
  const banner = document.getElementById("banner");
  let timer = null, waiting = false;

  function typing() {
    const a = document.activeElement;
    return part && a && part.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
  }
  function reload() {
    timer = null;
    if (typing()) { waiting = true; return; }
    fetch(window.location.href, {credentials: "same-origin"}).then(function (r) {
      if (r.redirected || r.status === 401) { window.location.assign("/login"); return null; }
      return r.text();
    }).then(function (html) {
      if (!html) return;
      const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live]");
      if (fresh && !typing()) part.replaceChildren.apply(part, Array.from(fresh.childNodes));
    });
  }
  function soon() { if (!timer) timer = setTimeout(reload, 500); }   // one reload per burst of events
  if (part) part.addEventListener("focusout", function () { if (waiting) { waiting = false; soon(); } });

  const es = new EventSource("/api/events");
  if (part) es.addEventListener(part.dataset.live, soon);
  es.addEventListener("health", function (e) {
    const h = JSON.parse(e.data);
    if (!banner) return;
    banner.hidden = h.ok;
    banner.className = "banner" + (h.ok ? "" : " bad");
    banner.querySelector(".problems").textContent = (h.problems || []).join("; ");
  });
})();
