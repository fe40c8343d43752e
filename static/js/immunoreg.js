// Small behaviours kept out of the HTML so a strict Content-Security-Policy can forbid inline scripts.
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});

// Where the keyboard starts on a form page: after a failed save, on the first field in error
// (its aria-describedby reads the message out), or on the form's own error when no field is to
// blame; with no error, on the field a link names in its fragment (#id_<field>, e.g. the
// worklist's "Fix" links), so a nurse starts typing where the query points.
function focusOnArrival() {
  const form = document.querySelector("form[data-has-errors]");
  if (form) {
    const target =
      form.querySelector("[aria-invalid='true']:not([type='hidden'])") ||
      form.querySelector("#form-errors");
    if (target) {
      target.focus();
      target.scrollIntoView({ block: "center" });
      return;
    }
  }
  const id = decodeURIComponent(window.location.hash.slice(1));
  if (!id.startsWith("id_")) return;
  const field = document.getElementById(id);
  if (field && field.matches("input, select, textarea")) {
    field.focus();
    field.scrollIntoView({ block: "center" });
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", focusOnArrival);
} else {
  focusOnArrival();
}

// A table wider than the screen scrolls sideways inside itself (immunoreg.css); a keyboard
// user must be able to reach it to scroll it (WCAG 2.1.1, axe's scrollable-region-focusable),
// so a table takes a tab stop while, and only while, it scrolls: watched as its size changes
// (a turned tablet, a <details> opened).
function tabStopWhileScrolling(entries) {
  for (const { target: table } of entries) {
    const scrolls = table.scrollWidth > table.clientWidth + 1;
    if (scrolls && !table.hasAttribute("tabindex")) {
      table.setAttribute("tabindex", "0");
      table.dataset.scrollStop = "";
    } else if (!scrolls && "scrollStop" in table.dataset) {
      table.removeAttribute("tabindex");
      delete table.dataset.scrollStop;
    }
  }
}

function watchScrollingTables() {
  const observer = new ResizeObserver(tabStopWhileScrolling);
  document.querySelectorAll("main table, main .table-scroll").forEach((box) => observer.observe(box));
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", watchScrollingTables);
} else {
  watchScrollingTables();
}
