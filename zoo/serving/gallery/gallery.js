// The gallery's live widgets: they call this server's own REST API (nothing external).
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const errorBox = document.getElementById("error");

async function post(method, body) {
  const response = await fetch(`/v1/models/${config.name}:${method}`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  errorBox.textContent = "";
  return answer;
}

function showError(error) { errorBox.textContent = String(error.message || error); }

function imageWidget() {
  const canvas = document.getElementById("canvas");
  const pen = canvas.getContext("2d");
  const normalize = document.getElementById("normalize");
  normalize.checked = config.mnist;
  normalize.disabled = !config.mnist;
  function clear() {
    pen.fillStyle = "#fff";
    pen.fillRect(0, 0, canvas.width, canvas.height);
    document.getElementById("prediction").textContent = "-";
    document.getElementById("bars").replaceChildren();
  }
  clear();
  let drawing = false;
  function at(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  }
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    pen.lineWidth = 22; pen.lineCap = "round"; pen.lineJoin = "round"; pen.strokeStyle = "#000";
    pen.beginPath(); pen.moveTo(...at(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event)); pen.stroke();
  });
  const finish = () => { if (drawing) { drawing = false; predict(canvas.toDataURL("image/png")); } };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointerleave", finish);
  document.getElementById("clear").addEventListener("click", clear);
  document.getElementById("upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      const image = new Image();
      // Shown on the canvas, but the file itself is sent (at its own size): predicted once drawn.
      image.onload = () => { clear(); pen.drawImage(image, 0, 0, canvas.width, canvas.height); predict(reader.result); };
      image.onerror = () => { clear(); predict(reader.result); };  // e.g. TIFF: the server still reads it
      image.src = reader.result;
    };
    reader.readAsDataURL(file);
  });
  async function predict(dataUrl) {
    try {
      const answer = await post("predict", {instances: [{b64: dataUrl.split(",")[1]}], normalize: normalize.checked});
      const result = answer.predictions[0];
      const shares = result.probabilities || result.scores;
      const best = result.class_id;
      document.getElementById("prediction").textContent =
        `${config.labels[best]}` + (result.probabilities ? ` (${result.probabilities[best].toFixed(3)})` : "");
      const low = Math.min(0, ...shares), high = Math.max(...shares);
      document.getElementById("bars").replaceChildren(...shares.map((value, index) => {
        const row = document.createElement("div"); row.className = "bar-row";
        const label = document.createElement("span"); label.className = "bar-label"; label.textContent = config.labels[index];
        const bar = document.createElement("span"); bar.className = "bar";
        bar.style.width = `${Math.max(1, 200 * (value - low) / ((high - low) || 1))}px`;
        const shown = document.createElement("span"); shown.className = "bar-value"; shown.textContent = value.toFixed(3);
        row.append(label, bar, shown);
        return row;
      }));
    } catch (error) { showError(error); }
  }
}

function textWidget() {
  const text = document.getElementById("text");
  let timer = null;
  async function nextWords() {
    try {
      const answer = await post("predict", {signature_name: "next_word", instances: [text.value]});
      const result = answer.predictions[0];
      document.getElementById("next-words").replaceChildren(...result.top_words.slice(0, 5).map((word, index) => {
        const item = document.createElement("li");
        item.textContent = `${word} ${result.top_probabilities[index].toFixed(3)}`;
        return item;
      }));
    } catch (error) { showError(error); }
  }
  text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(nextWords, 250); });
  document.getElementById("generate").addEventListener("click", async () => {
    const number = (id) => { const value = document.getElementById(id).value; return value === "" ? null : Number(value); };
    try {
      const answer = await post("generate", {prompt: text.value, words: number("words"),
        temperature: number("temperature"), top_k: number("top-k"), seed: number("seed")});
      document.getElementById("continuation").textContent = answer.text.replace(/\n/g, " / ");
    } catch (error) { showError(error); }
  });
  nextWords();
}

if (document.getElementById("canvas")) imageWidget();
if (document.getElementById("text")) textWidget();
