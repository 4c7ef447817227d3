// gemsight kiosk: live store page. Server-sent events from /api/events update the slot cells, the
// camera health strip and the open incidents without a reload. No framework, no build step.
"use strict";
(function () {
  const csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";
  const list = document.getElementById("incident-list");
  const manager = (document.getElementById("incidents") || {dataset: {}}).dataset.manager === "yes";
  const live = document.getElementById("live");

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function banner(h) {
    const b = document.getElementById("banner");
    if (!b) return;
    b.hidden = h.ok;
    b.className = "banner" + (h.ok ? "" : " bad");
    b.querySelector(".problems").textContent = (h.problems || []).join("; ");
  }

  function tally(caseKey) {
    const out = document.querySelector('[data-tally="' + caseKey + '"]');
    if (!out) return;
    const want = {}, seen = {};
    document.querySelectorAll('[data-slot^="' + caseKey + '/"]').forEach(function (c) {
      const e = c.dataset.expected, l = c.dataset.label;
      if (e && ["sold", "repair", "out for showing", "empty by design"].indexOf(e) < 0) want[e] = (want[e] || 0) + 1;
      if (l && l !== "empty" && l !== "unknown") seen[l] = (seen[l] || 0) + 1;
    });
    const names = Object.keys(Object.assign({}, want, seen)).sort();
    out.textContent = names.map(function (n) { return n + " " + (seen[n] || 0) + "/" + (want[n] || 0); }).join(" · ");
  }

  function onSlot(s) {
    const key = s.device + "/" + s.camera + "/" + s.slot;
    const cell = document.querySelector('[data-slot="' + key + '"]');
    if (!cell) return;
    cell.className = "slot c-" + s.cond + (s.alarm ? " alarm" : "") + (s.suggested ? " suggested" : "");
    const hint = cell.querySelector(".hint");
    if (hint) hint.textContent = s.hint || "";
    cell.dataset.label = s.label || "";
    cell.dataset.expected = s.expected || "";
    cell.querySelector(".seen").textContent = s.label || "…";
    cell.querySelector(".exp").textContent = s.expected || "—";
    tally(s.device + "/" + s.camera);
  }

  // A camera that is stale or down greys its case: the labels shown are the last known, not the present.
  function onCamera(c) {
    const key = c.device + "/" + c.camera;
    const art = document.querySelector('[data-case="' + key + '"]');
    const off = c.health === "stale" || c.health === "down" || c.health === "ended";
    if (art) art.classList.toggle("stale", off);
    const note = document.querySelector('[data-offline="' + key + '"]');
    if (note) note.textContent = c.offline_text || "";
    const model = document.querySelector('[data-model="' + key + '"]');
    if (model && c.model_text) model.textContent = c.model_text;
    const chip = document.querySelector('[data-camera="' + key + '"]');
    if (!chip) return;
    chip.className = "cam h-" + c.health;
    chip.title = c.reason;
    chip.querySelector(".h").textContent = c.health;
    chip.querySelector(".fps").textContent = c.fps !== null && c.fps !== undefined ? c.fps.toFixed(1) + " fps" : "";
  }

  function onDevice(d) {
    const chip = document.querySelector('[data-device="' + d.device + '"]');
    if (!chip) return;
    chip.className = "dev link-" + d.link;
    chip.title = d.error || "";
    chip.querySelector(".l").textContent = d.error || d.link;
  }

  function ackForm(inc) {
    const f = el("form", "ack");
    const note = el("input");
    note.name = "note"; note.placeholder = "note"; note.required = true; note.maxLength = 500;
    const btn = el("button", null, "Acknowledge");
    const msg = el("span", "error");
    f.append(note, btn, msg);
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      fetch("/api/incidents/" + inc.id + "/ack", {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify({note: note.value})
      }).then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
        .then(function (res) { if (!res[0]) msg.textContent = res[1].error; else refresh(); })
        .catch(function (e) { msg.textContent = String(e); });
    });
    return f;
  }

  function why(inc) {
    const ev = inc.evidence || {};
    const parts = ["opened " + inc.opened_text];
    if (ev.counts_before && ev.counts_after && ev.expected) {
      parts.push(ev.expected + " " + (ev.counts_before[ev.expected] || 0) + " → " + (ev.counts_after[ev.expected] || 0));
    }
    return parts.join(" · ");
  }

  // Evidence of a state incident: each slot's reference crop beside its crop when the incident fired.
  function showEvidence(li, id) {
    fetch("/api/incidents/" + id + "/evidence", {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j || !j.slots.length || li.querySelector(".evidence")) return;
        j.slots.forEach(function (s) {
          const fig = el("figure", "evidence");
          ["reference", "current"].forEach(function (w) {
            if (!s.urls[w]) return;
            const img = el("img");
            img.src = s.urls[w]; img.width = 112; img.height = 112; img.alt = s.slot + ": " + w;
            fig.append(img);
          });
          fig.append(el("figcaption", null, s.error ? s.slot + ": no pictures (" + s.error + ")" : s.slot + ": reference · at the alarm"));
          li.append(fig);
        });
      });
  }

  // Items are updated in place (keyed by incident id), so a note being typed survives other events.
  function render(open) {
    if (!list) return;
    document.getElementById("incident-count").textContent = open.length;
    const keep = {};
    open.forEach(function (inc) {
      keep[inc.id] = true;
      let li = list.querySelector('li[data-incident="' + inc.id + '"]');
      if (!li) {
        li = el("li");
        li.dataset.incident = inc.id;
        li.append(el("b"), el("span", "where"), el("small", "reason"), el("small", "why"));
        list.append(li);
        if ((inc.evidence || {}).states) showEvidence(li, inc.id);
      }
      li.className = "inc k-" + inc.kind + " s-" + inc.state;
      li.dataset.incidentSlot = inc.slot ? inc.device + "/" + inc.camera + "/" + inc.slot : "";
      li.querySelector("b").textContent = inc.title + " · ";
      li.querySelector(".where").textContent = inc.where;
      li.querySelector(".reason").textContent = inc.reason;
      li.querySelector(".why").textContent = why(inc);
      const form = li.querySelector("form.ack");
      if (inc.state === "acknowledged") {
        if (form) form.remove();
        if (!li.querySelector(".acked")) li.append(el("small", "acked", "acknowledged by " + inc.ack_by + ": " + inc.ack_note + " (" + inc.ack_text + ")"));
      } else if (manager && !form) {
        li.append(ackForm(inc));
      }
    });
    list.querySelectorAll("li[data-incident]").forEach(function (li) {
      if (!keep[li.dataset.incident]) li.remove();
    });
  }

  // One request at a time; events that arrive meanwhile ask for one more when it is done.
  let pending = null, again = false;
  function refresh() {
    if (pending) { again = true; return; }
    pending = fetch("/api/incidents", {credentials: "same-origin"})
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/login"); return null; }
        return r.json();
      })
      .then(function (j) { if (j) render(j.open || []); })
      .finally(function () { pending = null; if (again) { again = false; refresh(); } });
  }

  // Last heartbeat per device, as ages: the server sends {now, last} every 2 s; between events the
  // ages run on with the local clock (no clock agreement needed between kiosk PC and screen).
  let beats = null;
  function onHeartbeats(h) { beats = {at: Date.now() / 1000, now: h.now, last: h.last}; showBeats(); }
  function showBeats() {
    if (!beats) return;
    const passed = Date.now() / 1000 - beats.at;
    document.querySelectorAll("[data-hb-device]").forEach(function (e) {
      const t = beats.last[e.dataset.hbDevice];
      e.textContent = t ? "heartbeat " + Math.max(0, beats.now - t + passed).toFixed(0) + " s ago" : "no heartbeat yet";
    });
  }
  setInterval(showBeats, 1000);

  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("hello", function () { live.textContent = "live"; live.className = "live on"; refresh(); });
    es.addEventListener("slot", function (e) { onSlot(JSON.parse(e.data)); });
    es.addEventListener("camera", function (e) { onCamera(JSON.parse(e.data)); });
    es.addEventListener("device", function (e) { onDevice(JSON.parse(e.data)); });
    es.addEventListener("heartbeats", function (e) { onHeartbeats(JSON.parse(e.data)); });
    es.addEventListener("incident", function () { refresh(); });
    es.addEventListener("health", function (e) { banner(JSON.parse(e.data)); });
    es.addEventListener("evidence", function (e) {
      const id = JSON.parse(e.data).incident, li = list && list.querySelector('li[data-incident="' + id + '"]');
      if (li) showEvidence(li, id);
    });
    es.onerror = function () {
      live.textContent = "reconnecting…"; live.className = "live off";
      refresh();   // a logged-out session goes to the login page from there
    };
  }

  document.querySelectorAll("[data-case]").forEach(function (c) { tally(c.dataset.case); });
  // Tap a slot: the form below the cases says which slot in words and offers the model's classes.
  const pg = document.getElementById("planogram");
  if (pg) {
    const pick = function (ev) {
      const cell = ev.target.closest("[data-slot]");
      if (!cell || (ev.type === "keydown" && ev.key !== "Enter")) return;
      const parts = cell.dataset.slot.split("/");
      document.getElementById("pg-device").value = parts[0];
      document.getElementById("pg-camera").value = parts[1];
      document.getElementById("pg-slot").value = parts[2];
      document.getElementById("pg-where").textContent = cell.closest("[data-case]").querySelector("h2").firstChild.textContent.trim() + ", " + cell.dataset.where;
      const values = document.getElementById("pg-values");
      values.replaceChildren();
      const classes = document.querySelector('[data-classes="' + parts[0] + "/" + parts[1] + '"]');
      const names = (classes ? Array.from(classes.options).map(function (o) { return o.value; }) : [])
        .concat(["sold", "repair", "out for showing", "empty by design"]);
      names.forEach(function (n) { const o = document.createElement("option"); o.value = n; values.append(o); });
      const more = document.getElementById("pg-more");
      more.href = "/slots/" + parts.map(encodeURIComponent).join("/");
      more.hidden = false;
      const input = document.getElementById("pg-expected");
      input.value = cell.dataset.expected;
      input.focus();
    };
    document.getElementById("cases").addEventListener("click", pick);
    document.getElementById("cases").addEventListener("keydown", pick);
  }
  if (list) { refresh(); connect(); }
})();
