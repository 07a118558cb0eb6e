// The agent console's keys (the legend on the page lists them). Every key has a button or link
// beside it: without this script the console works by clicking, as plain forms.
//
//   /      focus the search          1..9  choose an offer (the first is chosen at first)
//   a      accept the chosen offer   r     reject it: type the reason, Enter submits
//   l      later (snooze) for it     n     the next call on the call list
//   Esc    leave a field
//
// Keys are ignored while typing in a field, and with Ctrl, Alt or Cmd held.
(() => {
  "use strict";

  const TYPING = "input, textarea, select, [contenteditable]";
  const offers = () => Array.from(document.querySelectorAll("[data-offer]"));
  const chosen = () => document.querySelector("[data-offer].is-selected") || offers()[0] || null;

  function choose(card, { scroll = true } = {}) {
    for (const other of offers()) {
      other.classList.remove("is-selected");
      other.removeAttribute("aria-current");
    }
    card.classList.add("is-selected");
    card.setAttribute("aria-current", "true");
    if (scroll) card.scrollIntoView({ block: "nearest" });
    const said = document.getElementById("agent-selected");
    if (said) said.textContent = card.dataset.offerName || "";
  }

  function submit(form) {
    if (!form) return;
    // requestSubmit checks `required` fields and fires "submit", like a click on its button.
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  }

  function answerForm(outcome) {
    const card = chosen();
    return card ? card.querySelector(`form[data-outcome="${outcome}"]`) : null;
  }

  // One submission per form: a second click or key press while the page is on its way is dropped.
  // (The server records an answer once per request id anyway.)
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (form.dataset.submitting) {
        event.preventDefault();
        return;
      }
      form.dataset.submitting = "true";
    },
    true,
  );
  // Back to a page kept by the browser: its forms may be used again.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    for (const form of document.querySelectorAll("form[data-submitting]")) delete form.dataset.submitting;
  });

  // Clicking into an offer, or tabbing to it, chooses it: the keys then work on what the agent sees.
  document.addEventListener("focusin", (event) => {
    const card = event.target.closest && event.target.closest("[data-offer]");
    if (card && !card.classList.contains("is-selected")) choose(card, { scroll: false });
  });
  document.addEventListener("click", (event) => {
    const card = event.target.closest && event.target.closest("[data-offer]");
    if (card && !card.classList.contains("is-selected")) choose(card, { scroll: false });
  });

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (target instanceof Element && target.closest(TYPING)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "/") {
      const search = document.getElementById("agent-search");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
      return;
    }
    if (/^[1-9]$/.test(key)) {
      const card = offers()[Number(key) - 1];
      if (card) {
        event.preventDefault();
        choose(card);
      }
      return;
    }
    if (key === "a" || key === "l") {
      const form = answerForm(key === "a" ? "accepted" : "later");
      if (form) {
        event.preventDefault();
        submit(form);
      }
      return;
    }
    if (key === "r") {
      const form = answerForm("rejected");
      const reason = form && form.querySelector("input[name=reason]");
      if (reason) {
        event.preventDefault(); // the "r" is not typed into the reason
        reason.focus();
      }
      return;
    }
    if (key === "n") {
      const form = document.querySelector("form[data-agent-next]");
      if (form) {
        event.preventDefault();
        submit(form);
      }
    }
  });
})();
