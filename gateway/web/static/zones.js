// The zones page: no-capture polygons drawn on a canvas over the camera preview (corners
// in 0..1 image coordinates), saved as JSON with the session's CSRF header. The server
// validates like `gateway config validate`; its message is shown as is (textContent).
"use strict";
(() => {
  const editor = document.getElementById("zones-editor");
  if (!editor) return;
  const canvas = document.getElementById("zones-canvas");
  const img = document.getElementById("zones-preview");
  const ctx = canvas.getContext("2d");
  const status = document.getElementById("zones-status");
  const zones = JSON.parse(editor.dataset.zones || "[]");
  let current = [];
  // the page's language: the template puts each text in a data-* attribute
  const say = (key, values = {}) =>
    Object.entries(values).reduce((t, [k, v]) => t.replace(`{${k}}`, v), editor.dataset[key]);

  function path(points, close) {
    ctx.beginPath();
    points.forEach(([x, y], i) => {
      const px = x * canvas.width;
      const py = y * canvas.height;
      if (i === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    if (close) ctx.closePath();
    ctx.stroke();
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#d00";
    zones.forEach((z) => path(z.polygon, true));
    ctx.strokeStyle = "#06c";
    path(current, false);
    for (const [x, y] of current) ctx.fillRect(x * canvas.width - 3, y * canvas.height - 3, 6, 6);
    const list = document.getElementById("zones-list");
    list.replaceChildren();
    for (const z of zones) {
      const li = document.createElement("li");
      li.textContent = say("corners", { name: z.name, n: z.polygon.length });
      list.appendChild(li);
    }
  }

  img.addEventListener("load", () => {
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    draw();
  });
  img.addEventListener("error", () => {
    document.getElementById("preview-status").textContent = say("noPreview");
  });
  canvas.addEventListener("click", (e) => {
    const r = canvas.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    current.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
    draw();
  });
  document.getElementById("zone-add-corner").addEventListener("click", () => {
    const field = document.getElementById("zone-corner");
    const parts = field.value.split(",").map((v) => Number(v.trim()));
    if (parts.length !== 2 || parts.some((v) => Number.isNaN(v))) {
      status.textContent = say("badCorner");
      return;
    }
    current.push(parts); // not clamped: the server names a corner outside 0..1
    field.value = "";
    draw();
  });
  document.getElementById("zone-finish").addEventListener("click", () => {
    if (current.length === 0) return;
    const name = document.getElementById("zone-name").value || say("zone", { n: zones.length + 1 });
    zones.push({ name, polygon: current });
    current = [];
    document.getElementById("zone-name").value = "";
    draw();
  });
  document.getElementById("zone-undo").addEventListener("click", () => {
    current.pop();
    draw();
  });
  document.getElementById("zone-remove").addEventListener("click", () => {
    zones.pop();
    draw();
  });
  document.getElementById("zones-save").addEventListener("click", async () => {
    status.textContent = say("saving");
    const body = {
      zones,
      space: document.getElementById("space").value,
      signage_installed: document.getElementById("signage-installed").checked,
      signage_recorded: document.getElementById("signage-recorded").value,
    };
    const resp = await fetch(`/api/zones/${encodeURIComponent(editor.dataset.camera)}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": editor.dataset.csrf },
      credentials: "same-origin",
    });
    let r = {};
    try {
      r = await resp.json();
    } catch {
      r = { error: say("refused", { status: resp.status }) };
    }
    if (r.error) status.textContent = say("notSaved", { problems: (r.problems || [r.error]).join("; ") });
    else {
      status.textContent = say(r.reloaded ? "reloaded" : "saved", { n: zones.length });
      img.src = `${img.src.split("?")[0]}?saved=${Date.now()}`; // the preview, zones blanked
    }
  });
  draw();
})();
