// The import's change page: ask the status view every second until the import is done or failed.
(function () {
  "use strict";
  const box = document.getElementById("import-progress");
  if (!box || box.dataset.finished === "true") {
    return;
  }
  const bar = document.getElementById("import-progress-bar");
  const text = document.getElementById("import-progress-text");
  const error = document.getElementById("import-progress-error");
  const rejected = document.getElementById("import-rejected-link");

  function show(state) {
    const total = state.total_rows || Math.max(state.processed_rows, 1);
    bar.max = total;
    bar.value = state.processed_rows;
    text.textContent = state.status_display + ": " + state.processed_rows + " / " + (state.total_rows ?? "?");
    for (const name of ["created", "updated", "unchanged", "merged", "rejected"]) {
      const cell = box.querySelector('[data-count="' + name + '"]');
      if (cell) {
        cell.textContent = state[name];
      }
    }
    error.textContent = state.error;
    error.hidden = !state.error;
    rejected.hidden = !state.rejected;
  }

  function poll() {
    fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((state) => {
        show(state);
        if (state.finished) {
          window.location.reload(); // the read-only fields below show the final figures too
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(() => window.setTimeout(poll, 5000));
  }

  window.setTimeout(poll, 1000);
})();
