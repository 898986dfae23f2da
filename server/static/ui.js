"use strict";
// A model's page, /ui/<name>: a form made from the model's card (POST /info), answered by
// POST /predict without reloading the page; a CSV file predicted in batches. The server
// checks every value: the page sends what was typed and shows what the server says.
(() => {
  const {el, call, request} = modelfly;
  const name = decodeURIComponent(location.pathname.split("/")[2] || "");
  // Rows per request: the server's limit, and no more than keeps a request quick.
  const batchRows = Math.min(Number(document.body.dataset.maxRows) || 100, 500);
  // A file of more rows than this goes in as one job (POST /jobs), for the server's workers.
  const jobRows = 5000;
  const $ = (id) => document.getElementById(id);
  const form = $("predict-form");
  const fields = $("fields");
  const versionChoice = $("version-choice");
  const errorBox = $("error");
  const result = $("result");
  const bars = $("probabilities");
  let card = null;
  let inputs = [];

  $("model-name").textContent = name;
  document.title = `${name} · modelfly`;

  const acceptsMissing = (feature) => Boolean(feature.missing ?? card.missing_values);

  function field(feature, index) {
    const id = `feature-${index}`;
    const hint = el("span", {class: "hint", id: `${id}-hint`},
      feature.type === "category" ? "category" : feature.type);
    let input;
    if (feature.type === "category") {
      input = el("select", {id, name: feature.name, "aria-describedby": hint.id});
      input.append(acceptsMissing(feature) ? el("option", {value: ""}, "(missing)")
        : el("option", {value: "", disabled: true, selected: true}, "choose…"));
      for (const category of feature.categories) {
        input.append(el("option", {value: category}, category));
      }
    } else if (feature.type === "text") {
      input = el("textarea", {id, name: feature.name, rows: 3, "aria-describedby": hint.id});
    } else {
      input = el("input", {id, name: feature.name, type: "text", inputmode: "decimal",
                           autocomplete: "off", spellcheck: "false",
                           "aria-describedby": hint.id});
    }
    const wrap = el("div", {class: "field"}, el("label", {for: id}, feature.name), hint, input);
    if (feature.type !== "category" && acceptsMissing(feature)) {
      const missing = el("input", {type: "checkbox", id: `${id}-missing`});
      missing.addEventListener("change", () => { input.disabled = missing.checked; });
      wrap.append(el("label", {class: "missing", for: missing.id}, missing, " missing"));
      input.missingBox = missing;
    }
    return {wrap, input};
  }

  // What the caller typed, as JSON: numbers as numbers, anything else as typed, for the
  // server to accept or name; null where "missing" is chosen or a number is left empty.
  function valueOf(feature, input) {
    if (input.disabled) return null;
    if (feature.type === "number") {
      if (input.value.trim() === "") return null;
      const number = Number(input.value);
      return Number.isFinite(number) ? number : input.value;
    }
    if (feature.type === "category") return input.value === "" ? null : input.value;
    return input.value;
  }

  function setValue(input, value) {
    if (input.missingBox) {
      input.missingBox.checked = value === null;
      input.disabled = value === null;
    }
    input.value = value === null ? "" : String(value);
  }

  function build(newCard) {
    const typed = new Map(inputs.map(({feature, input}) => [feature.name, input.value]));
    card = newCard;
    fields.replaceChildren(el("legend", {}, "Features"));
    inputs = card.features.map((feature, index) => {
      const {wrap, input} = field(feature, index);
      fields.append(wrap);
      if (typed.has(feature.name)) input.value = typed.get(feature.name);
      return {feature, input, wrap};
    });
    const metrics = Object.entries(card.metrics || {}).map(([key, value]) => `${key} ${value}`);
    $("model-summary").textContent = [card.task, `version ${card.version}`, ...metrics]
      .filter(Boolean).join(" · ");
    $("example").hidden = !card.example;
    form.hidden = false;
    $("batch").hidden = false;
    $("status").textContent = "";
  }

  async function load(version) {
    const info = await call("/info", {model: name, version});
    if (info.status !== 200) {
      $("status").textContent = `This model's card could not be read: ${info.body.error}`;
      return;
    }
    build(info.body);
    if (info.body.versions.length > 1 && !versionChoice.options.length) {
      for (const each of info.body.versions) {
        versionChoice.append(el("option", {value: each, selected: each === info.body.version},
          each === info.body.default_version ? `${each} (default)` : each));
      }
      $("version-field").hidden = false;
    }
  }

  function fillExample() {
    let example = card.example.features;
    if (Array.isArray(example) && example.length && typeof example[0] === "object") {
      example = example[0]; // many rows or records: the first
    }
    if (typeof example === "string") example = [example];
    inputs.forEach(({feature, input}, index) => {
      const value = Array.isArray(example) ? example[index] : example[feature.name];
      setValue(input, value === undefined ? null : value);
    });
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    for (const {input, wrap} of inputs) {
      input.removeAttribute("aria-invalid");
      wrap.classList.remove("invalid");
    }
  }

  // The server's message, beside the form, and the fields it names marked.
  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    result.textContent = "";
    bars.replaceChildren();
    const named = inputs.filter(({feature}) =>
      message.includes(`'${feature.name}'`) || message.includes(`"${feature.name}"`));
    for (const {input, wrap} of named) {
      input.setAttribute("aria-invalid", "true");
      wrap.classList.add("invalid");
    }
    if (named.length) named[0].input.focus();
  }

  function showAnswer(answer) {
    result.textContent = String(answer.predictions[0]);
    bars.replaceChildren();
    const probabilities = answer.probabilities ? answer.probabilities[0] : {};
    for (const [label, probability] of Object.entries(probabilities)) {
      bars.append(el("li", {},
        el("span", {class: "label"}, label),
        el("meter", {min: 0, max: 1, value: probability, "aria-label": label}),
        el("span", {class: "percent"}, `${(probability * 100).toFixed(1)} %`)));
    }
  }

  async function submit(event) {
    event.preventDefault();
    clearError();
    result.textContent = "…";
    const record = Object.fromEntries(
      inputs.map(({feature, input}) => [feature.name, valueOf(feature, input)]));
    const answer = await call("/predict", {features: record, model: name, version: card.version});
    if (answer.status === 200) showAnswer(answer.body);
    else showError(answer.body.error || `the server answered ${answer.status}`);
  }

  // RFC 4180: commas, quotes doubled inside quoted cells, CRLF or LF line ends.
  function parseCsv(text) {
    const rows = [];
    let row = [];
    let cell = "";
    let quoted = false;
    for (let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; i < text.length; i++) {
      const char = text[i];
      if (quoted) {
        if (char !== '"') cell += char;
        else if (text[i + 1] === '"') { cell += '"'; i++; }
        else quoted = false;
      } else if (char === '"' && cell === "") quoted = true;
      else if (char === ",") { row.push(cell); cell = ""; }
      else if (char === "\n" || char === "\r") {
        if (char === "\r" && text[i + 1] === "\n") i++;
        row.push(cell);
        rows.push(row);
        row = [];
        cell = "";
      } else cell += char;
    }
    if (cell !== "" || row.length) rows.push([...row, cell]);
    return rows.filter((line) => line.length > 1 || line[0] !== "");
  }

  const csvCell = (value) => (/[",\r\n]/.test(String(value))
    ? `"${String(value).replaceAll('"', '""')}"` : String(value));

  function csvValue(feature, text) {
    if (text === "") return null;
    if (feature && feature.type === "number") {
      const number = Number(text);
      return text.trim() !== "" && Number.isFinite(number) ? number : text;
    }
    return text;
  }

  async function predictFile() {
    const progress = $("csv-progress");
    const status = $("csv-status");
    const failure = $("csv-error");
    const download = $("csv-download");
    failure.hidden = true;
    download.hidden = true;
    const fail = (message) => { failure.textContent = message; failure.hidden = false; };
    const file = $("csv-file").files[0];
    if (!file) return fail("Choose a CSV file first.");
    const [header, ...lines] = parseCsv(await file.text());
    if (!lines.length) return fail("The file has no rows under its header.");
    const byName = new Map(card.features.map((feature) => [feature.name, feature]));
    const short = lines.findIndex((line) => line.length !== header.length);
    if (short >= 0) {
      return fail(`Line ${short + 2} of the file has ${lines[short].length} cell(s); ` +
                  `its header has ${header.length}.`);
    }
    progress.max = lines.length;
    progress.value = 0;
    progress.hidden = false;
    if (lines.length > jobRows) return predictFileAsJob(file, lines.length, fail);
    const records = lines.map((line) => Object.fromEntries(
      header.map((column, i) => [column, csvValue(byName.get(column), line[i])])));
    const answers = [];
    let size = batchRows;
    while (answers.length < records.length) {
      const start = answers.length;
      const batch = records.slice(start, start + size);
      const answer = await call("/predict", {features: batch, model: name, version: card.version});
      if (answer.status === 413 && size > 1) { size = Math.ceil(size / 2); continue; }
      if (answer.status !== 200) {
        const message = (answer.body.error || `the server answered ${answer.status}`)
          .replace(/^(row|record) (\d+)/, (_, kind, k) => `line ${start + Number(k) + 2} of the file`);
        status.textContent = `${answers.length} of ${records.length} rows predicted.`;
        return fail(message);
      }
      const classes = card.classes || [];
      answer.body.predictions.forEach((prediction, i) => answers.push([prediction,
        ...classes.map((label) => answer.body.probabilities[i][String(label)])]));
      progress.value = answers.length;
      status.textContent = `${answers.length} of ${records.length} rows predicted.`;
    }
    const columns = ["prediction", ...(card.classes || []).map((label) => `p_${label}`)];
    offer([columns, ...answers].map((line) => line.map(csvCell).join(",")).join("\n") + "\n",
          answers.length);
  }

  // The file as it is, as a job: its progress polled, its answers fetched as CSV.
  async function predictFileAsJob(file, rows, fail) {
    const status = $("csv-status");
    const query = `?model=${encodeURIComponent(name)}&version=${encodeURIComponent(card.version)}`;
    const submitted = await request(`/jobs${query}`, {method: "POST", body: file,
                                                      type: "text/csv"});
    if (submitted.status !== 202) return fail(submitted.body.error);
    const job = submitted.body;
    for (let delay = 100; ; delay = Math.min(delay * 1.5, 2000)) {
      const state = await request(job.status_url);
      if (state.status !== 200) return fail(state.body.error);
      $("csv-progress").value = state.body.rows_done;
      status.textContent = `Job ${state.body.status}: ${state.body.rows_done} of ${rows} rows predicted.`;
      if (state.body.status === "succeeded") break;
      if (state.body.status === "failed" || state.body.status === "cancelled") {
        return fail(state.body.error || `the job was ${state.body.status}`);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    const answers = await request(job.result_url, {accept: "text/csv"});
    if (answers.text === undefined) return fail(answers.body.error);
    offer(answers.text, rows);
  }

  function offer(text, rows) {
    const download = $("csv-download");
    if (download.href) URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
    download.download = `${name}-answers.csv`;
    download.textContent = `Download the answers (${rows} rows, CSV)`;
    download.hidden = false;
    download.focus();
  }

  form.addEventListener("submit", submit);
  $("example").addEventListener("click", fillExample);
  $("csv-run").addEventListener("click", predictFile);
  versionChoice.addEventListener("change", () => load(versionChoice.value));
  load(null);
})();
