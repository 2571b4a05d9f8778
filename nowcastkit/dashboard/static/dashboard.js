// nowcastkit dashboard: swap the sections the stream sends, tick durations, follow a log,
// and show the timeline's runs on hover. Plain JavaScript, no build step.
"use strict";

function duration(seconds) {
  if (seconds < 60) return seconds.toFixed(1) + "s";
  const minutes = Math.floor(seconds / 60), secs = Math.floor(seconds % 60);
  if (minutes < 60) return minutes + "m" + String(secs).padStart(2, "0") + "s";
  return Math.floor(minutes / 60) + "h" + String(minutes % 60).padStart(2, "0") + "m";
}

function tick() {
  for (const el of document.querySelectorAll("[data-since]")) {
    const since = Date.parse(el.dataset.since);
    if (!isNaN(since)) el.textContent = duration(Math.max(0, (Date.now() - since) / 1000));
  }
}

function live(badge) {
  // EventSource reconnects by itself when the dashboard restarts; the badge says so.
  const source = new EventSource(badge.dataset.stream);
  source.onopen = () => { badge.textContent = "live"; badge.className = "live on"; };
  source.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "live off"; };
  source.addEventListener("today", (message) => {
    const sections = JSON.parse(message.data).sections;
    for (const [id, html] of Object.entries(sections)) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = html;
    }
    tick();
  });
}

function follow(pre) {
  const source = new EventSource(pre.dataset.follow);
  source.addEventListener("log", (message) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(JSON.parse(message.data).text);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (message) => {
    source.close();  // else EventSource would open it again
    const ended = JSON.parse(message.data);
    const badge = document.querySelector("#outcome .badge");
    if (badge) { badge.textContent = ended.outcome; badge.className = "badge " + ended.kind; }
    const note = document.getElementById("following");
    if (note) note.textContent = "the run has ended: " + ended.outcome;
  });
}

function timeline(tip) {
  for (const bar of document.querySelectorAll(".timeline rect.run")) {
    const title = bar.querySelector("title");
    const text = title ? title.textContent : bar.dataset.run;
    if (title) title.remove();  // our tip instead of the browser's slow tooltip
    bar.addEventListener("mousemove", (e) => {
      tip.textContent = text; tip.hidden = false;
      tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
    });
    bar.addEventListener("mouseleave", () => { tip.hidden = true; });
    bar.addEventListener("click", () => { location.href = "/runs/" + bar.dataset.run; });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const badge = document.getElementById("live");
  if (badge) live(badge);
  const pre = document.getElementById("log-text");
  if (pre && pre.dataset.follow) follow(pre);
  const tip = document.getElementById("tip");
  if (tip) timeline(tip);
  tick();
  setInterval(tick, 1000);
});
