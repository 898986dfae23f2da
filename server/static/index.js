"use strict";
// GET / for a browser: the models this server serves, each with a link to its page.
(async () => {
  const {el, call} = modelfly;
  const status = document.getElementById("status");
  const table = document.getElementById("models");
  const health = await call("/health", {});
  if (health.status !== 200) {
    status.textContent = `The models could not be listed: ${health.body.error}`;
    return;
  }
  for (const name of health.body.models) {
    const info = await call("/info", {model: name});
    const link = el("a", {href: `/ui/${encodeURIComponent(name)}`}, name);
    const cells = [el("th", {scope: "row"}, link, name === health.body.default_model ? " (default)" : "")];
    if (info.status === 200) {
      const card = info.body;
      cells.push(el("td", {}, card.versions.map((version) =>
        (version === card.default_version && card.versions.length > 1 ? `${version} (default)` : version)).join(", ")),
      el("td", {}, card.task || ""),
      el("td", {}, Object.entries(card.metrics || {}).map(([key, value]) => `${key} ${value}`).join(", ")));
    } else {
      cells.push(el("td", {colspan: 3}, `not available: ${info.body.error}`));
    }
    table.tBodies[0].append(el("tr", {}, ...cells));
  }
  status.textContent = `${health.body.models.length} model(s).`;
  table.hidden = false;
})();
