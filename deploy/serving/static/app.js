// The retrieval page: pick or drop an image, POST it to /search, show the top-k as a grid.
(function () {
  "use strict";
  const form = document.getElementById("query-form");
  const fileInput = document.getElementById("file-input");
  const dropZone = document.getElementById("drop-zone");
  const preview = document.getElementById("query-preview");
  const hint = document.getElementById("drop-hint");
  const kInput = document.getElementById("k-input");
  const radiusInput = document.getElementById("radius-input");
  const button = document.getElementById("search-button");
  const statusLine = document.getElementById("status");
  const codeLine = document.getElementById("query-code");
  const results = document.getElementById("results");
  let file = null;
  let previewUrl = null;

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  fetch("/health").then((r) => r.json()).then((h) => {
    document.getElementById("model-info").textContent =
      `${h.bits}-bit codes · ${h.database_size} database images · model ${h.model} (${h.runtime})`;
    kInput.max = h.max_k;
  }).catch(() => setStatus("the service does not answer /health", true));

  function choose(f) {
    if (!f) return;
    file = f;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(f);
    preview.src = previewUrl;
    preview.hidden = false;
    hint.hidden = true;
    button.disabled = false;
    search();
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  ["dragenter", "dragover"].forEach((ev) => dropZone.addEventListener(ev, (e) => {
    e.preventDefault();
    dropZone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((ev) => dropZone.addEventListener(ev, (e) => {
    e.preventDefault();
    dropZone.classList.remove("over");
  }));
  dropZone.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));
  form.addEventListener("submit", (e) => { e.preventDefault(); search(); });

  async function search() {
    if (!file) return;
    const body = new FormData();
    body.append("image", file);
    body.append("k", kInput.value || "10");
    if (radiusInput.value !== "") body.append("radius", radiusInput.value);
    button.disabled = true;
    setStatus(`searching with ${file.name}…`);
    results.replaceChildren();
    codeLine.textContent = "";
    try {
      const resp = await fetch("/search", { method: "POST", body: body });
      let data;
      try { data = await resp.json(); } catch (_) { data = { error: `HTTP ${resp.status}` }; }
      if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
      show(data);
    } catch (err) {
      setStatus(`error: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  function show(data) {
    const exact = data.results.filter((r) => r.distance === 0).length;
    if (data.radius === undefined) {
      setStatus(`top ${data.results.length} of the database by Hamming distance ` +
        `(${exact} at distance 0) in ${data.milliseconds} ms`);
    } else {
      const total = data.total === null ? "more" : data.total;
      setStatus(`${data.results.length} images within Hamming distance ${data.radius}` +
        (data.capped ? ` (of ${total}: raise k to see more)` : "") +
        ` (${exact} at distance 0) in ${data.milliseconds} ms`);
    }
    codeLine.textContent = `query code (${data.bits} bits): ${data.code}`;
    for (const r of data.results) {
      const fig = el("figure", "result");
      fig.dataset.id = r.id;
      const img = el("img");
      img.src = `/image/${r.id}`;
      img.alt = r.path;
      img.title = r.path;
      const cap = el("figcaption");
      const dist = el("div", "dist" + (r.distance === 0 ? " zero" : ""), `#${r.rank} · Hamming ${r.distance}`);
      cap.append(dist);
      if (r.labels && r.labels.length) cap.append(el("div", "labels", `labels ${r.labels.join(", ")}`));
      cap.append(el("div", "path", r.path));
      fig.append(img, cap);
      results.append(fig);
    }
  }
})();
