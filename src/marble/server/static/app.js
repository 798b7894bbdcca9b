// Marble's page: submit a job, follow its event stream (progress + previews), show the PNGs.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // {id, token} of the job being followed
let models = []; // from /api/models: {name, image_size, ...}

function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function errorText(response) {
  const body = await response.json().catch(() => ({}));
  const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
  const retry = response.headers.get("Retry-After");
  return (detail || response.statusText) + (retry ? ` (try again in ${retry} s)` : "");
}

function setStatus(text) { $("status").textContent = text; }

async function loadModels() {
  try {
    models = await (await api("/api/models")).json();
    $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.image_size} px)`, m.name)));
    $("model-choice").hidden = models.length < 2;
    $("sampler").replaceChildren(...models[0].samplers.map((s) => new Option(s, s, s === "dpm++", s === "dpm++")));
    $("model-info").textContent = `${models[0].name} · ${models[0].image_size} px`;
  } catch (error) {
    setStatus(`Could not list models: ${error.message}`);
  }
}

// The server wants the model's exact size: pad to a square (like the dataset loader) and scale here.
async function modelSizedPng(file, background, smooth) {
  const size = (models.find((m) => m.name === $("model").value) || models[0]).image_size;
  const bitmap = await createImageBitmap(file);
  const canvas = Object.assign(document.createElement("canvas"), { width: size, height: size });
  const context = canvas.getContext("2d");
  context.fillStyle = background;
  context.fillRect(0, 0, size, size);
  context.imageSmoothingEnabled = smooth; // a mask stays black and white
  const scale = size / Math.max(bitmap.width, bitmap.height);
  const [w, h] = [bitmap.width * scale, bitmap.height * scale];
  context.drawImage(bitmap, (size - w) / 2, (size - h) / 2, w, h);
  return canvas.toDataURL("image/png");
}

async function editFields() {
  const [image, mask] = [$("init_image").files[0], $("mask").files[0]];
  if (!image && !mask) return {};
  const strength = $("strength").value;
  return { // a mask without an image goes too: the server's answer says what is missing
    init_image: image ? await modelSizedPng(image, "#fff", true) : null,
    mask: mask ? await modelSizedPng(mask, "#000", false) : null,
    strength: strength === "" ? null : Number(strength),
    paste_unmasked: $("paste_unmasked").checked,
  };
}

function submission() {
  const steps = Number($("steps").value);
  return {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    steps,
    guidance: Number($("guidance").value),
    sampler: $("sampler").value,
    seed: $("random_seed").checked ? null : Number($("seed").value),
    num_images: Number($("num_images").value),
    preview_every: Math.max(1, Math.round(steps / 10)),
    model: $("model").value || null,
  };
}

async function generate(event) {
  event.preventDefault();
  $("generate").disabled = true;
  try {
    const job = await (await api("/api/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...submission(), ...(await editFields()) }),
    })).json();
    current = { id: job.id, token: job.token };
    $("cancel").disabled = false;
    $("seed").value = job.seed;
    $("progress").value = 0;
    setStatus(`Queued (seed ${job.seed})…`);
    await follow(job);
  } catch (error) {
    setStatus(error.message);
  } finally {
    $("generate").disabled = false;
    $("cancel").disabled = true;
    current = null;
  }
}

// EventSource cannot send an Authorization header, so the stream is read with fetch.
async function follow(job) {
  const response = await api(job.events_url);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const name = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (name && data) await handle(name, JSON.parse(data), job);
    }
  }
}

async function handle(name, data, job) {
  if (name === "state" && data.state === "queued") setStatus(`Queued: ${data.position ?? 0} ahead (seed ${job.seed})`);
  if (name === "state" && data.state === "running") setStatus(`Sampling (seed ${job.seed})…`);
  if (name === "progress") {
    $("progress").max = data.total;
    $("progress").value = data.step;
    setStatus(`Step ${data.step} of ${data.total} (seed ${job.seed})`);
  }
  if (name === "preview") {
    $("preview").src = data.image;
    $("preview").hidden = false;
  }
  if (name === "done") {
    setStatus(`Done in ${data.seconds.toFixed(1)} s (seed ${job.seed}).`);
    for (const image of data.images.slice().reverse()) await addToGallery(image);
  }
  if (name === "error") setStatus(`${data.state === "cancelled" ? "Cancelled" : "Failed"}: ${data.message}`);
}

async function addToGallery(image) {
  const url = URL.createObjectURL(await (await api(image.url)).blob());
  const figure = document.createElement("figure");
  const picture = Object.assign(document.createElement("img"), { src: url, alt: `seed ${image.seed} #${image.index}` });
  const link = Object.assign(document.createElement("a"), {
    href: url, download: `marble-seed${image.seed}-${image.index}.png`, textContent: "download",
  });
  const caption = document.createElement("figcaption");
  caption.append(`seed ${image.seed} · #${image.index} · `, link);
  figure.append(picture, caption);
  $("gallery").prepend(figure);
}

async function cancel() {
  if (!current) return;
  $("cancel").disabled = true;
  try {
    await api(`/api/jobs/${current.id}/cancel`, { method: "POST", headers: { "X-Job-Token": current.token } });
  } catch (error) {
    setStatus(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("settings").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("random_seed").addEventListener("change", () => { $("seed").disabled = $("random_seed").checked; });
  $("clear_edit").addEventListener("click", () => { $("init_image").value = ""; $("mask").value = ""; });
  loadModels();
});
