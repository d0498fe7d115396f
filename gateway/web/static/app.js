// Live progress for the announcement list and the report: poll /api/announcements/{id}/progress until every
// delivery is final. On the report page (data-reload) the page reloads once progress changes, so the
// per-class numbers stay true. The compose form shows the force-majeure reason only for that kind.
"use strict";

function describe(p) {
  return p.done + " из " + p.total + (p.complete ? " — завершено" : " — идёт доставка");
}

function watch(box) {
  const id = box.dataset.progress;
  const bar = box.querySelector("progress");
  const text = box.querySelector(".progress-text");
  let last = bar ? bar.value : -1;
  async function tick() {
    let p;
    try {
      const answer = await fetch("/api/announcements/" + id + "/progress", { credentials: "same-origin" });
      if (!answer.ok) return setTimeout(tick, 5000);
      p = await answer.json();
    } catch (e) {
      return setTimeout(tick, 5000);
    }
    if (bar) { bar.max = p.total || 1; bar.value = p.total ? p.done : 1; }
    if (text) text.textContent = describe(p);
    box.dataset.complete = p.complete ? "1" : "0";
    if (box.dataset.reload && p.done !== last) { window.location.reload(); return; }
    last = p.done;
    if (!p.complete) setTimeout(tick, 1000);
  }
  const done = bar && bar.max > 0 && bar.value >= bar.max && text && text.textContent.indexOf("завершено") >= 0;
  if (!done) setTimeout(tick, 500);
  else box.dataset.complete = "1";
}

function reasonField() {
  const kind = document.getElementById("kind");
  const reason = document.querySelector("label.reason");
  if (!kind || !reason) return;
  const update = function () { reason.hidden = kind.value !== "force_majeure"; };
  kind.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-progress]").forEach(watch);
  reasonField();
});
