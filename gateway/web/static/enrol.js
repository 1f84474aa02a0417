// The enrolment page: photos from the file input or the camera (getUserMedia), checked
// (verdicts, nothing stored) then saved, by fetch with the session's CSRF header. Photos
// stay in this page's memory; nothing comes back but verdicts. Text goes in as textContent.
"use strict";
(() => {
  const form = document.getElementById("enrol");
  if (!form) return;
  const taken = [];
  const status = document.getElementById("enrol-status");
  const saveButton = document.getElementById("enrol-save");
  const video = document.getElementById("camera-view");
  // the page's language: the template puts each text in a data-* attribute
  const say = (key, values = {}) =>
    Object.entries(values).reduce((t, [k, v]) => t.replace(`{${k}}`, v), form.dataset[key]);

  function body() {
    const data = new FormData();
    for (const file of document.getElementById("photos").files) data.append("photos", file);
    taken.forEach((blob, i) => data.append("photos", blob, `camera-${i + 1}.jpg`));
    return data;
  }

  function show(result) {
    const rows = document.querySelector("#verdicts tbody");
    rows.replaceChildren();
    for (const v of result.verdicts || []) {
      const row = document.createElement("tr");
      for (const text of [v.photo, v.text]) {
        const td = document.createElement("td");
        td.textContent = text;
        row.appendChild(td);
      }
      row.className = v.ok ? "ok" : "refused";
      rows.appendChild(row);
    }
  }

  async function send(path) {
    status.textContent = say("working");
    const resp = await fetch(path, {
      method: "POST",
      body: body(),
      headers: { "X-CSRF-Token": form.dataset.csrf },
      credentials: "same-origin",
    });
    let result = {};
    try {
      result = await resp.json();
    } catch {
      result = { error: say("refused", { status: resp.status }) };
    }
    show(result);
    return result;
  }

  const base = `/api/people/${encodeURIComponent(form.dataset.person)}/enrol`;
  document.getElementById("enrol-check").addEventListener("click", async () => {
    const r = await send(`${base}/check`);
    saveButton.disabled = !(r.good > 0);
    status.textContent = r.error || say("checked", { n: r.good });
  });
  saveButton.addEventListener("click", async () => {
    const r = await send(base);
    status.textContent = r.error || say("stored", { n: r.stored });
    if (!r.error) saveButton.disabled = true;
  });

  document.getElementById("camera-start").addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    } catch (e) {
      status.textContent = say("noCamera", { error: e.name });
      return;
    }
    video.hidden = false;
    document.getElementById("camera-take").disabled = false;
  });
  document.getElementById("camera-take").addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      if (blob) taken.push(blob);
      document.getElementById("camera-count").textContent = say("taken", { n: taken.length });
    }, "image/jpeg", 0.92);
  });
})();
